"""Benchmarks of segnet-tf, run from the repository root as modules (``python -m benchmarks.run
--help``, ``python -m benchmarks.decoder_study --help``); results in ``results/``."""
