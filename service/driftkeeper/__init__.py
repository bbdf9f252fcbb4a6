"""Driftkeeper: drift monitoring and automated retraining for scikit-learn models."""

__version__ = "0.1.0"
