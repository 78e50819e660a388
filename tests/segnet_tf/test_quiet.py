"""The CLI decides TensorFlow's log level before TensorFlow loads, and can hold back what its C++
writes to file descriptor 2 (the subprocess runs in test_multiworker.py show it end to end)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from segnet_tf.quiet import (
    cli_args,
    held_back_stderr,
    log_level,
    native_notices,
    verbose_requested,
)

PYTHON = sys.executable


def test_the_cli_is_recognised_by_its_command_line_only():
    script = ["/usr/local/bin/segnet-tf", "--verbose", "train"]
    assert cli_args(script, [PYTHON, *script]) == ["--verbose", "train"]
    module = [PYTHON, "-m", "segnet_tf.cli", "train", "--out", "x"]
    assert cli_args(["-m", "train", "--out", "x"], module) == ["train", "--out", "x"]
    assert cli_args(["-m"], [PYTHON, "-m", "pytest", "-v"]) is None  # -v is pytest's
    assert cli_args(["app.py", "-v"], [PYTHON, "app.py", "-v"]) is None


def test_verbose_counts_before_the_command_only():
    assert verbose_requested(["-v", "train"]) and verbose_requested(["--verbose", "models"])
    assert not verbose_requested(["train", "--out", "x"])
    assert not verbose_requested(["predict", "-v"])  # an option of the command, not ours
    assert (log_level(None), log_level(["train"]), log_level(["-v", "train"])) == ("2", "3", "0")


def test_native_writes_to_stderr_are_held_back_and_replayed_on_failure(capfd):
    with held_back_stderr():
        os.write(2, b"I0000 cpu_feature_guard.cc] a C++ line\n")
    assert capfd.readouterr().err == ""
    with pytest.raises(ImportError), held_back_stderr():
        os.write(2, b"why the import failed\n")
        raise ImportError("no TensorFlow")
    assert capfd.readouterr().err == "why the import failed\n"
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"  # the descriptor is restored


def test_litert_notices_are_held_back(capfd):
    from segnet_tf.export.tflite import TFLiteModel

    model = Path(__file__).parents[1] / "edge_demo" / "fixtures" / "model_int8.tflite"
    TFLiteModel(model.read_bytes())
    assert "XNNPACK" not in capfd.readouterr().err
    with native_notices():
        os.write(2, b"held\n")
    assert capfd.readouterr().err == ""


BLOCK_TENSORFLOW = """
import importlib.abc, sys
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Missing())
import segnet_tf
"""


def test_without_tensorflow_the_import_names_the_extras():
    import subprocess

    run = subprocess.run([PYTHON, "-c", BLOCK_TENSORFLOW], capture_output=True, text=True)
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("ModuleNotFoundError: segnet-tf needs TensorFlow, installed as an extra")
    assert "pip install 'segnet-tf[cpu]' (CPU) or 'segnet-tf[gpu]' (CUDA)" in last
