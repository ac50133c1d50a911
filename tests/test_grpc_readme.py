"""The gRPC page's examples (docs/grpc.md), run as written against a live ``serve --grpc-port``.

The ``tritonclient.grpc`` block runs as a script (its address pointed at the test
server) and prints what its comments say. grpcurl has no Debian package, so its
block is replayed the way grpcurl works: services listed and messages described
by server reflection, the ``-d`` JSON parsed as proto3 JSON into the described
request, the answer printed as proto3 JSON (lowerCamelCase names, 64-bit
integers as strings), and compared with the comment under each command.
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import ROOT, free_port, run_server, serve_args, server_env
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

pytestmark = pytest.mark.server

README_TARGET = "127.0.0.1:8081"


def grpc_section() -> str:
    text = (ROOT / "docs" / "grpc.md").read_text(encoding="utf-8")
    return text.split("\n**KServe over gRPC.**", 1)[0]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", grpc_section(), flags=re.S)


@pytest.fixture(scope="module")
def target(iris_artifact: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("readme-grpc")
    http_port, grpc_port = free_port(), free_port()
    with run_server(serve_args(http_port, "--grpc-port", str(grpc_port)), server_env(iris_artifact, folder),
                    http_port, output=folder / "server.log"):
        yield f"127.0.0.1:{grpc_port}"


def numbers(text: str) -> list[float]:
    return [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text)]


def test_the_tritonclient_example_prints_what_it_says(target: str, tmp_path: Path) -> None:
    [code] = blocks("python")
    assert README_TARGET in code
    script = tmp_path / "example.py"
    script.write_text(code.replace(README_TARGET, target))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    said = [line.split("#", 1)[1].replace("(rounded here)", "") for line in code.splitlines() if "print(" in line]
    printed = result.stdout.strip().split("\n", 1)
    assert printed[0] == said[0].strip()  # the classes, exactly
    shown, got = numbers(said[1]), numbers(printed[1])
    assert len(shown) == len(got) == 6
    assert all(abs(a - b) <= 5e-4 * max(1.0, abs(b)) + 1e-4 for a, b in zip(shown, got, strict=True))


def grpcurl_commands() -> list[tuple[list[str], str]]:
    """Each grpcurl command of the README's sh block (continuations joined) and the comment below it."""
    [block] = blocks("sh")
    commands: list[tuple[list[str], str]] = []
    pending = ""
    for line in block.splitlines():
        if line.startswith("#"):
            words, said = commands[-1]
            commands[-1] = (words, f"{said} {line[1:].strip()}".strip())
        elif line.endswith("\\"):
            pending += line[:-1] + " "
        elif pending or line.startswith("grpcurl"):
            command = pending + line
            pending = ""
            if "'" in command and command.count("'") % 2:  # a quoted -d spanning lines
                pending = command + "\n"
                continue
            commands.append((shlex.split(command), ""))
    return commands


def replay(words: list[str], target: str) -> object:
    """What grpcurl prints for ``words`` (``-plaintext [-d JSON] ADDRESS (list | SERVICE/METHOD)``)."""
    assert words[:2] == ["grpcurl", "-plaintext"]
    data = words[words.index("-d") + 1] if "-d" in words else None
    address, verb = words[-2], words[-1]
    assert address == README_TARGET
    with grpc.insecure_channel(target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        if verb == "list":
            return sorted(database.get_services())
        service_name, method_name = verb.rsplit("/", 1)
        pool = DescriptorPool(database)
        method = pool.FindServiceByName(service_name).FindMethodByName(method_name)
        request_class = message_factory.GetMessageClass(method.input_type)
        answer_class = message_factory.GetMessageClass(method.output_type)
        request = json_format.Parse(data or "{}", request_class())
        call = channel.unary_unary(f"/{service_name}/{method_name}", request_serializer=request_class.SerializeToString,
                                   response_deserializer=answer_class.FromString)
        return json_format.MessageToDict(call(request, timeout=10))


def test_the_grpcurl_examples_answer_what_their_comments_say(target: str) -> None:
    commands = grpcurl_commands()
    assert [words[-1] for words, _ in commands] == [
        "list", "grpc.health.v1.Health/Check", "inference.GRPCInferenceService/ModelInfer"]
    for words, said in commands:
        got = replay(words, target)
        if words[-1] == "list":
            assert got == sorted(name.strip() for name in said.split(","))
        else:
            shown = json.loads(said)
            if "modelVersion" in shown:  # the page shows what `train` writes (a UTC time); the test's model is "1"
                assert re.fullmatch(r"\d{8}\.\d{6}", shown["modelVersion"]), shown
                shown["modelVersion"] = got["modelVersion"]
            assert got == shown, words[-1]
