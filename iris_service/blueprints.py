"""The blueprints under their first import path (``from iris_service.blueprints import predictions``).

Kept so the README's mount snippet of earlier releases works unchanged; they live in ``rest/blueprints/``.
"""
from .rest.blueprints import admin, docs, health, mlflow, models, predictions, ui, v1, v2

__all__ = ["admin", "docs", "health", "mlflow", "models", "predictions", "ui", "v1", "v2"]
