"""The Edge TPU's constraints, checked on a converted model, and its compiler when installed.

Coral's compiler maps only ops of its supported list, on full-int8 tensors of static shape and rank
<= 4 where only the three innermost dimensions exceed 1 (coral.ai "TensorFlow models on the Edge
TPU"). The first op it cannot map sends that op and everything after it to the CPU, so a single
EQUAL in the decoder would undo the accelerator: the check names the offending op instead of
letting that pass.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from segnet_tf.export.tflite import ModelInfo

EDGETPU_OPS = frozenset(
    """
    CONV_2D DEPTHWISE_CONV_2D MAX_POOL_2D AVERAGE_POOL_2D ADD SUB MUL MAXIMUM MINIMUM RELU RELU6
    RELU_N1_TO_1 LOGISTIC TANH CONCATENATION RESHAPE PAD SLICE STRIDED_SLICE SPLIT SQUEEZE
    SPACE_TO_DEPTH RESIZE_NEAREST_NEIGHBOR RESIZE_BILINEAR MEAN SOFTMAX QUANTIZE DEQUANTIZE
    FULLY_CONNECTED TRANSPOSE_CONV PACK EXPAND_DIMS REDUCE_MAX REDUCE_MIN
    """.split()
)
INT8_TYPES = frozenset({"int8", "uint8", "int32"})  # int32: biases and shape operands


class EdgeTPUError(ValueError):
    """The model breaks an Edge TPU constraint."""


def edgetpu_problems(info: ModelInfo) -> list[str]:
    """Every Edge TPU constraint that ``info`` breaks, as readable sentences (empty: compatible)."""
    problems = [
        f"op {op} (x{n}) is not supported by the Edge TPU"
        for op, n in info.ops.items()
        if op not in EDGETPU_OPS
    ]
    floats = {t: n for t, n in info.tensor_types.items() if t not in INT8_TYPES}
    if floats:
        problems.append(f"non-integer tensors {floats}: the Edge TPU needs full int8")
    for shape in info.activation_shapes:
        if len(shape) > 4 or any(d > 1 for d in shape[:-3]) or any(d < 0 for d in shape):
            problems.append(f"tensor shape {shape}: needs static rank <= 4, only 3 inner dims > 1")
            break
    bad_strides = [s for s in info.strided_slice_strides if any(v != 1 for v in s)]
    if bad_strides:
        problems.append(f"STRIDED_SLICE with strides {bad_strides[0]}: the Edge TPU needs stride 1")
    return problems


def check_edgetpu(info: ModelInfo) -> None:
    problems = edgetpu_problems(info)
    if problems:
        raise EdgeTPUError("model is not Edge TPU compatible: " + "; ".join(problems))


def compiled_name(model_file: str) -> str:
    """The file ``edgetpu_compiler`` writes for ``model_file``: ``<stem>_edgetpu.tflite``.

    The exporter keeps the compiler's name (``model_edgetpu.tflite`` ->
    ``model_edgetpu_edgetpu.tflite``), so a manual ``edgetpu_compiler -o coral/
    coral/model_edgetpu.tflite`` on another machine writes the same file, and the demo's
    ``--edgetpu`` folder lookup (``edge_demo.contract.EDGETPU_ORDER``) finds it either way.
    """
    return f"{Path(model_file).stem}_edgetpu.tflite"


def compile_edgetpu(model_path: Path, out_dir: Path) -> dict:
    """Run ``edgetpu_compiler`` when it is on PATH and move its model beside ``model_path``'s
    artifacts in ``out_dir`` (its log stays behind); report how many ops it mapped to the TPU."""
    compiler = shutil.which("edgetpu_compiler")
    if compiler is None:
        return {
            "compiled": False,
            "reason": "edgetpu_compiler not on PATH (Coral's Debian package)",
        }
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(
            [compiler, "-s", "-o", tmp, str(model_path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            return {"compiled": False, "reason": result.stderr.strip() or result.stdout.strip()}
        compiled = Path(tmp) / compiled_name(model_path.name)
        shutil.move(str(compiled), out_dir / compiled.name)
    mapped = re.findall(r"^(\w+)\s+(\d+)\s+Mapped to Edge TPU", result.stdout, re.MULTILINE)
    total_mapped = sum(int(n) for _, n in mapped)
    return {
        "compiled": True,
        "file": compiled.name,
        "ops_mapped": total_mapped,
        "log": result.stdout[-4000:],
    }
