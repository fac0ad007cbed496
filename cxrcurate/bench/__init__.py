"""Benchmarking the model ladder on a manifest: data, training, metrics, runs and their comparison."""
