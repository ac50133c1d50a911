"""The Flask model server every tutorial writes, kept exactly that naive.

The model is a module-level global loaded at import time and each request
calls ``model.predict([features])`` on a Python list: that is the baseline
iris-service has to beat, so it must not be improved here. Served under
waitress by the bench, and under Flask's development server when run as
``python -m bench.reference.tutorial`` (as the tutorials run it).
"""

import os

import joblib
from flask import Flask, jsonify, request

MODEL_PATH = os.environ.get("BENCH_MODEL_PATH", "model.joblib")

app = Flask(__name__)
model = joblib.load(MODEL_PATH)


@app.route("/predict", methods=["POST"])
def predict():
    features = request.get_json()["features"]
    pred = model.predict([features])
    return jsonify({"prediction": int(pred[0])})


@app.route("/health")
def health():
    return jsonify({"status": "ok"})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("BENCH_PORT", "5000")), threaded=True)
