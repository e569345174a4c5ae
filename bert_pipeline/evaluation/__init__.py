"""Evaluation and the registry: metrics, the TF-IDF baseline, the champion gate and promotion."""
