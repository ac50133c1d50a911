"""A Flask app that answers a constant without a model: the HTTP floor.

No model server on Flask and waitress can beat this; it shows how much of a
request's cost is the web stack rather than the model.
"""

from flask import Flask, jsonify

app = Flask(__name__)


@app.route("/predict", methods=["POST"])
def predict():
    return jsonify({"prediction": 0})


@app.route("/health")
def health():
    return jsonify({"status": "ok"})
