"""Benchmarks run as ``creditx bench AREA``; each prints a table and writes JSON."""
