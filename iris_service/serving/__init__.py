"""The data plane: registry, inference, readiness, load and unload, with no web framework in it."""
from .dataplane import DataPlane, InferResult
from .registry import ModelSource, Registry
from .settings import ServingSettings
from .sources import model_sources

__all__ = ["DataPlane", "InferResult", "ModelSource", "Registry", "ServingSettings", "model_sources"]
