"""What the data plane is told at start: row limit, range policy, batching, what loads may accept."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..artifacts import LoadOptions
from ..errors import ConfigError
from ..runtime.batch_policy import BatchingSettings


@dataclass(frozen=True)
class ServingSettings:
    """The data plane's settings, typed; front-ends build them from their config once."""

    max_batch_size: int = 10_000
    range_policy: str = "allow"
    range_margin: float = 0.0
    batching: BatchingSettings = field(default_factory=BatchingSettings)
    load: LoadOptions = field(default_factory=LoadOptions)
    production: bool = False

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
            ),
            production=config.get("ENV_NAME") == "production",
        )


def _as_list(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(v) for v in value if str(v)]
