"""The tutorial's model server written the FastAPI way, served by uvicorn.

``async def`` with a blocking ``model.predict`` inside is what the FastAPI
tutorials show; it is kept as is because that is the comparison. FastAPI and
uvicorn are a bench-only extra, never a runtime dependency of iris-service.
"""

import os

import joblib
from fastapi import FastAPI
from pydantic import BaseModel

MODEL_PATH = os.environ.get("BENCH_MODEL_PATH", "model.joblib")

app = FastAPI()
model = joblib.load(MODEL_PATH)


class Features(BaseModel):
    features: list[float]


@app.post("/predict")
async def predict(body: Features) -> dict[str, int]:
    pred = model.predict([body.features])
    return {"prediction": int(pred[0])}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
