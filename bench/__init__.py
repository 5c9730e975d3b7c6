"""Benchmarks of tanma-sync against baselines measured in the same run (``python -m bench``)."""
