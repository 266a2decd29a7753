"""Prefect flows: ingest, train, promote and predict, tracked in MLflow."""
