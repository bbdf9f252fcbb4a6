"""The lab's Flask service (src/app.py), reduced to what serves ``/predict``.

Run under gunicorn as the issue measured it: ``gunicorn -w 2 --chdir bench lab_app:app``
with ``LAB_MODEL_PATH`` naming the joblib file written by the lab's training. As in the lab,
each worker loads the pipeline and the reference table at import, the drift gauges sit
behind a ``/metrics`` dispatcher, and the scheduler does not run (under gunicorn
``__name__`` is never ``"__main__"``).
"""

from __future__ import annotations

import os

import joblib
import pandas as pd
from flask import Flask, Response, jsonify, request
from prometheus_client import Gauge, make_wsgi_app
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from lab import FEATURES, TARGET, load_table

app = Flask(__name__)

MODEL_PATH = os.environ.get("LAB_MODEL_PATH", "/app/model_pipeline.joblib")

try:
    model_pipeline = joblib.load(MODEL_PATH)
    print(f"Model pipeline loaded successfully from {MODEL_PATH}")
except Exception as e:
    print(f"Error loading model pipeline from {MODEL_PATH}: {e}")
    model_pipeline = None


@app.route("/", methods=["GET"])
def home() -> Response:
    return jsonify({"status": "running",
                    "endpoints": {"predict": "/predict (POST)", "metrics": "/metrics (GET)"}})


@app.route("/predict", methods=["POST"])
def predict() -> Response | tuple[Response, int]:
    if model_pipeline is None:
        return jsonify({"error": "Model pipeline not loaded properly"}), 500
    data = request.json
    df = pd.DataFrame(data, index=[0])
    prediction = model_pipeline.predict(df)
    return jsonify({"prediction": prediction[0]})


data_drift_gauge = Gauge("data_drift", "Data Drift Score")
concept_drift_gauge = Gauge("concept_drift", "Concept Drift Score")

diamonds = load_table()
X_reference = diamonds[FEATURES]
y_reference = diamonds[TARGET]

app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/metrics": make_wsgi_app()})  # type: ignore[method-assign]
