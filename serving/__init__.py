"""The FastAPI service and the ``creditx`` command line."""
