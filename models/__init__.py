"""Demand Prediction Module: hourly, daily and weekly forecasters with quantiles."""
