"""Edge TPU rules on hand-built model descriptions, and the compiled file's one name."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from edge_demo.runtime import resolve_model_path
from edge_demo.tflite_backend import EDGETPU_CUSTOM_OP
from segnet_tf.export.edgetpu import (
    EdgeTPUError,
    check_edgetpu,
    compile_edgetpu,
    compiled_name,
    edgetpu_problems,
)
from segnet_tf.export.exporter import FORMATS
from segnet_tf.export.tflite import ModelInfo


def info(**changes) -> ModelInfo:
    """A model the Edge TPU takes: int8 convolutions, pooling and slices at batch 1."""
    fields = {
        "ops": {"CONV_2D": 6, "MAX_POOL_2D": 2, "STRIDED_SLICE": 2, "QUANTIZE": 1},
        "custom_ops": [],
        "tensor_types": {"int8": 20, "int32": 8},
        "activation_shapes": [(1, 48, 64, 3), (1, 24, 32, 8), (1, 48, 64, 11)],
        "strided_slice_strides": [(1, 1, 1, 1), (1, 1, 1, 1)],
    }
    return ModelInfo(**{**fields, **changes})


def test_a_compatible_model_has_no_problems():
    assert edgetpu_problems(info()) == []
    check_edgetpu(info())


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"ops": {"CONV_2D": 6, "EQUAL": 2}}, "op EQUAL (x2) is not supported by the Edge TPU"),
        ({"ops": {"DEPTH_TO_SPACE": 1}}, "op DEPTH_TO_SPACE (x1) is not supported"),
        ({"tensor_types": {"int8": 20, "float32": 3}}, "non-integer tensors {'float32': 3}"),
        ({"activation_shapes": [(2, 48, 64, 3)]}, "tensor shape (2, 48, 64, 3)"),  # batch 2
        ({"activation_shapes": [(1, 1, 4, 6, 8)]}, "tensor shape (1, 1, 4, 6, 8)"),  # rank 5
        ({"activation_shapes": [(1, -1, 64, 3)]}, "tensor shape (1, -1, 64, 3)"),  # dynamic
        ({"strided_slice_strides": [(1, 2, 2, 1)]}, "STRIDED_SLICE with strides (1, 2, 2, 1)"),
    ],
)
def test_each_broken_rule_is_named(changes, problem):
    problems = edgetpu_problems(info(**changes))
    assert len(problems) == 1 and problem in problems[0], problems
    with pytest.raises(EdgeTPUError, match="not Edge TPU compatible: " + problem.split(" (")[0]):
        check_edgetpu(info(**changes))


def test_every_problem_is_reported_at_once():
    broken = info(
        ops={"CONV_2D": 1, "EQUAL": 1, "SELECT_V2": 1},
        tensor_types={"float32": 2},
        activation_shapes=[(3, 8, 8, 3), (3, 4, 4, 3)],  # one shape problem, not two
    )
    problems = edgetpu_problems(broken)
    assert len(problems) == 4, problems
    assert [p.split()[0] for p in problems] == ["op", "op", "non-integer", "tensor"]


FAKE_COMPILER = """#!/bin/sh
# edgetpu_compiler -s -o DIR MODEL: writes DIR/<stem>_edgetpu.tflite and DIR/<stem>_edgetpu.log
while [ "$1" != "" ]; do
  case "$1" in -o) out="$2"; shift 2;; -s) shift;; *) model="$1"; shift;; esac
done
stem=$(basename "$model" .tflite)
cat "$model" > "$out/${stem}_edgetpu.tflite"
printf 'edgetpu-custom-op' >> "$out/${stem}_edgetpu.tflite"
echo log > "$out/${stem}_edgetpu.log"
echo "Operator                       Count      Status"
echo "CONV_2D                        6          Mapped to Edge TPU"
echo "MAX_POOL_2D                    2          Mapped to Edge TPU"
"""


def test_the_compiled_model_keeps_the_compilers_name_and_the_demo_finds_it(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    compiler = bin_dir / "edgetpu_compiler"
    compiler.write_text(FAKE_COMPILER)
    compiler.chmod(compiler.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "coral"
    out.mkdir()
    model = out / FORMATS["edgetpu"].filename
    model.write_bytes(b"int8 model")

    result = compile_edgetpu(model, out)
    assert result["compiled"] and result["ops_mapped"] == 8
    # the name a manual `edgetpu_compiler -o coral/ coral/model_edgetpu.tflite` writes too
    assert result["file"] == compiled_name(model.name) == "model_edgetpu_edgetpu.tflite"
    assert sorted(p.name for p in out.iterdir()) == [
        "model_edgetpu.tflite",
        "model_edgetpu_edgetpu.tflite",
    ]  # the compiler's log stays out of the export folder
    assert (out / result["file"]).read_bytes().endswith(EDGETPU_CUSTOM_OP)
    assert resolve_model_path(out, edgetpu=True) == out / "model_edgetpu_edgetpu.tflite"


def test_without_the_compiler_the_report_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    result = compile_edgetpu(Path(tmp_path / "model_edgetpu.tflite"), tmp_path)
    assert result == {
        "compiled": False,
        "reason": "edgetpu_compiler not on PATH (Coral's Debian package)",
    }
