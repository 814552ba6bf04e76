"""Runnable example pipelines; ``python -m examples`` runs them all."""
