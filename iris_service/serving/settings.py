"""What the data plane is told at start: row limit, range policy, batching, what loads may accept."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..artifacts import LoadOptions
from ..errors import ConfigError
from ..runtime.batch_policy import BatchingSettings
from .drift import DriftSettings

log = logging.getLogger("iris_service.serving")


@dataclass(frozen=True)
class ServingSettings:
    """The data plane's settings, typed; front-ends build them from their config once."""

    max_batch_size: int = 10_000
    range_policy: str = "allow"
    range_margin: float = 0.0
    batching: BatchingSettings = field(default_factory=BatchingSettings)
    load: LoadOptions = field(default_factory=LoadOptions)
    production: bool = False
    drift: DriftSettings = field(default_factory=DriftSettings)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ServingSettings:
        """Read the data plane's keys from a checked config mapping (``settings.load_settings``)."""
        try:
            batching = BatchingSettings.parse(config.get("BATCHING", "off"))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return cls(
            max_batch_size=int(config.get("MAX_BATCH_SIZE", 10_000)),
            range_policy=str(config.get("INPUT_RANGE_POLICY", "allow")).lower(),
            range_margin=float(config.get("INPUT_RANGE_MARGIN") or 0.0),
            batching=batching,
            load=LoadOptions(
                pickle_allowed=bool(config.get("PICKLE_ALLOWED", True)),
                allow_version_mismatch=bool(config.get("ALLOW_VERSION_MISMATCH", False)),
                skops_trusted_types=tuple(_as_list(config.get("SKOPS_TRUSTED_TYPES"))),
                trusted_keys=read_trusted_keys(config.get("TRUSTED_KEYS")),
            ),
            production=config.get("ENV_NAME") == "production",
            drift=DriftSettings.from_config(config),
        )


def _as_list(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(v) for v in value if str(v)]


def read_trusted_keys(paths: Any) -> tuple[Any, ...]:
    """``TRUSTED_KEYS``' files, read once at start; a missing or bad one stops start-up.

    Reloads check signatures with the keys read here: a key file changed on
    disk later is not picked up by a running server.
    """
    if not _as_list(paths):
        return ()
    from ..artifacts.signing import KeyFileError, load_trusted_keys  # cryptography only when needed

    try:
        keys = load_trusted_keys(_as_list(paths))
    except KeyFileError as exc:
        raise ConfigError(f"TRUSTED_KEYS: {exc}") from None
    for key in keys:
        log.info("artifacts must be signed: trusting key %s from %s", key.key_id[:16], key.source)
    return keys
