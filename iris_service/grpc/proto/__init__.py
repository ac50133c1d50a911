"""The generated protobuf and gRPC modules of ``inference.proto`` (committed; see ``generate.py``).

Its messages live in a descriptor pool of their own (``inference_pb2.POOL``), not
protobuf's default one: ``tritonclient.grpc`` and KServe register their own
``inference.*`` messages there, and two files defining one symbol cannot share a
pool, so a process that imports a Triton or KServe client beside this server
(a test, an app calling another server) would fail at import.
"""
