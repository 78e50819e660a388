"""Refused training runs: a number that is not finite or not in range, a refused --init-weights
or --encoder-weights, a start that runs out of memory. Each exits non-zero with one line of
output, no traceback, and leaves no --out folder behind (the run folder is made only once the
model is built, and removed when no epoch finished)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest
import tensorflow as tf
from click.testing import CliRunner

from segnet_tf.cli import cli

REPO = Path(__file__).resolve().parents[2]
TINY = ["--model", "segnet-basic", "--width", "0.125", "--input-size", "16x16", "--epochs", "1"]


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_refused(result, out: Path, *expected: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for text in expected:
        assert text in lines[0]
    assert not out.exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--lr", "nan", "--lr nan: must be a finite number > 0"),
        ("--lr", "inf", "--lr inf: must be a finite number > 0"),
        ("--lr", "-1e-3", "--lr -0.001: must be a finite number > 0"),
        ("--weight-decay", "nan", "--weight-decay nan: must be a finite number >= 0"),
        ("--width", "inf", "--width inf: must be a finite number in (0, 4]"),
        ("--width", "nan", "--width nan: must be a finite number in (0, 4]"),
        ("--width", "0", "--width 0.0: must be a finite number in (0, 4]"),
        ("--epochs", "0", "--epochs 0: must be an integer >= 1"),
        ("--batch-size", "0", "--batch-size 0: must be an integer >= 1"),
        ("--seed", "-1", "--seed -1: must be an integer 0..4294967295"),
        ("--encoder-lr-mult", "nan", "--encoder-lr-mult nan: must be a finite number > 0"),
        ("--freeze-encoder-epochs", "9", "--freeze-encoder-epochs 9: must be 0..--epochs (5)"),
        ("--input-size", "8x8", "--input-size 8x8: segnet-lite: input height 8 is too small"),
        ("--distill-weight", "1.5", "--distill-weight 1.5: must be a finite number in [0, 1]"),
        ("--distill-temperature", "inf", "--distill-temperature inf: must be a finite number > 0"),
        ("--join-timeout", "nan", "--join-timeout nan: must be a finite number > 0"),
    ],
)
def test_a_bad_number_is_refused_before_anything_is_written(option, value, message, tmp_path):
    out = tmp_path / "run"
    assert_refused(run("train", option, value, "--out", out), out, message)


def test_the_refusal_is_one_line_from_a_real_process(tmp_path):
    """Library warnings included: what a user sees in a terminal (TensorFlow's start-up lines
    held back, no traceback)."""
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "segnet_tf.cli", "train", "--width", "inf", "--out", out]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode == 1
    assert lines == ["Error: --width inf: must be a finite number in (0, 4]"], lines
    assert not out.exists()


def test_refused_weights_leave_no_run_folder(tmp_path):
    inputs = keras.Input((16, 16, 3))
    unrelated = keras.layers.Conv2D(3, 1, name="unrelated")(inputs)
    keras.Model(inputs, unrelated).save(tmp_path / "unrelated.keras")
    out = tmp_path / "run"
    result = run("train", *TINY, "--init-weights", tmp_path / "unrelated.keras", "--out", out)
    assert_refused(result, out, "--init-weights", "no layer matches")
    result = run("train", *TINY, "--encoder-weights", tmp_path / "vgg.h5", "--out", out)
    assert_refused(result, out, "--encoder-weights")


def test_an_out_of_memory_start_is_one_line_and_leaves_no_run_folder(tmp_path, monkeypatch):
    def out_of_memory(self, *args, **kwargs):
        raise tf.errors.ResourceExhaustedError(
            None, None, "OOM when allocating tensor with shape[8,64,360,480]\n details"
        )

    monkeypatch.setattr(keras.Model, "fit", out_of_memory)
    out = tmp_path / "run"
    result = run("train", *TINY, "--out", out)
    assert_refused(result, out, "out of memory", "shape[8,64,360,480]", "lower --batch-size")
    # a folder the user made stays, with only their own files in it
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = run("train", *TINY, "--out", out)
    assert result.exit_code == 1 and "out of memory" in result.output
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
