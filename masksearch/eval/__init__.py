"""Evaluation: benchmark loaders, metrics, methods and reports."""
