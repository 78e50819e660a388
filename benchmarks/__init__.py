"""Benchmarks of segnet-tf (``python benchmarks/run.py --help``), results in ``results/``."""
