"""Exported files run in Python, for ``segnet-tf evaluate`` and ``segnet-tf predict``: a
``.tflite`` file on LiteRT, a ``.onnx`` file on ONNX Runtime's CPU provider, with the checks the
demo makes before it runs one (``edge_demo/runtime.py``, ``edge_demo/tflite_backend.py``): the file
is what its suffix says (a TFLite flatbuffer carries ``TFL3``), it is not compiled for the Edge
TPU, it takes one ``[1, H, W, 3]`` image and gives ``[1, H, W, classes]``, and a ``labels.json``
beside it names as many classes, for the same input size. A model file is data: nothing in it is
executed as code (neither runtime has a way to), and files above :data:`MAX_MODEL_BYTES` are
refused unread.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge_demo.contract import LABELS_FILE, MODEL_FILES
from edge_demo.tflite_backend import EDGETPU_CUSTOM_OP
from segnet_tf.data import DatasetConfig

MAX_MODEL_BYTES = 2**31  # a flatbuffer cannot be larger; our int8 model is 2 MB
MAX_LABELS_BYTES = 2**20


class ExportedModelError(ValueError):
    """An exported file that cannot be run here; the message names it and says why."""


def load_exported(path: str | Path, threads: int | None = None):
    """A runner for a ``.tflite`` or ``.onnx`` file: ``[H, W, 3]`` RGB 0..255 at its
    ``input_size`` in, real-valued class scores ``[H, W, C]`` out."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model {str(path)!r}: no such file")
    if path.stat().st_size > MAX_MODEL_BYTES:
        raise ExportedModelError(f"model {str(path)!r}: {path.stat().st_size} bytes, over 2 GiB")
    content = path.read_bytes()
    if path.suffix.lower() == ".onnx":
        runner = _onnx_runner(path, content, threads)
    else:
        runner = _tflite_runner(path, content, threads)
    _check_shapes(path, runner)
    return runner


def _tflite_runner(path: Path, content: bytes, threads: int | None):
    from segnet_tf.export.tflite import TFLiteModel

    if content[4:8] != b"TFL3":
        raise ExportedModelError(f"model {str(path)!r}: not a TFLite flatbuffer (no TFL3 mark)")
    if EDGETPU_CUSTOM_OP in content:
        raise ExportedModelError(
            f"model {str(path)!r} is compiled for the Edge TPU and runs only there "
            f"(python edge_demo/camera.py --edgetpu); use {MODEL_FILES['int8']} here"
        )
    try:
        runner = TFLiteModel(content, num_threads=threads)
    except (ValueError, RuntimeError) as e:
        raise ExportedModelError(f"model {str(path)!r}: LiteRT cannot load it: {e}") from None
    shape = [int(d) for d in runner.input["shape"]]
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
        raise ExportedModelError(f"model {str(path)!r}: input shape {shape} is not [1, H, W, 3]")
    return runner


def _onnx_runner(path: Path, content: bytes, threads: int | None):
    from segnet_tf.export.onnx import INSTALL_HINT, OnnxModel

    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ExportedModelError(f"model {str(path)!r} needs onnxruntime: {INSTALL_HINT}") from None
    try:
        runner = OnnxModel(content, num_threads=threads)
    except Exception as e:  # ONNX Runtime raises its own exception types for bad files
        raise ExportedModelError(f"model {str(path)!r}: ONNX Runtime cannot load it: {e}") from None
    shape = tuple(runner.input.shape)
    if len(shape) == 4 and all(isinstance(d, int) for d in shape) and shape[::3] == (1, 3):
        runner.input_size = (int(shape[1]), int(shape[2]))
    else:
        raise ExportedModelError(
            f"model {str(path)!r}: input shape {list(shape)} is not a static [1, H, W, 3]"
        )
    out = tuple(runner.session.get_outputs()[0].shape)
    runner.output = {"shape": out}
    return runner


def _check_shapes(path: Path, runner) -> None:
    h, w = runner.input_size
    if h < 1 or w < 1:
        raise ExportedModelError(f"model {str(path)!r}: input size {h}x{w}")
    out = tuple(runner.output["shape"])
    if len(out) != 4 or not isinstance(out[3], int | np.integer) or int(out[3]) < 1:
        raise ExportedModelError(
            f"model {str(path)!r}: output shape {list(out)} is not [1, H, W, classes]"
        )


def num_classes(runner) -> int:
    return int(runner.output["shape"][-1])


def outputs_probabilities(path: str | Path) -> bool:
    """Whether the ``labels.json`` beside ``path`` lists it as a Monte Carlo file (``export
    --mc-samples``), whose output is the mean probabilities of its samples, not logits."""
    labels = Path(path).parent / LABELS_FILE
    if not labels.is_file() or labels.stat().st_size > MAX_LABELS_BYTES:
        return False
    try:
        monte_carlo = json.loads(labels.read_text()).get("monte_carlo") or {}
        return Path(path).name in monte_carlo.get("files", [])
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError):
        return False  # exported_classes names what is wrong with the file


def exported_classes(path: str | Path, runner, default: DatasetConfig) -> DatasetConfig:
    """The classes of an exported model: the ``labels.json`` beside it (which must match the
    model's class count and input size, as the demo checks), else ``default`` when the count
    fits."""
    path = Path(path)
    labels = path.parent / LABELS_FILE
    n = num_classes(runner)
    if not labels.is_file():
        if default.num_classes != n:
            raise ExportedModelError(
                f"model {str(path)!r} predicts {n} classes and has no {LABELS_FILE} beside it "
                f"to name them ({default.name!r} has {default.num_classes})"
            )
        return default
    if labels.stat().st_size > MAX_LABELS_BYTES:
        raise ExportedModelError(f"{labels}: {labels.stat().st_size} bytes, not a labels file")
    try:
        info = json.loads(labels.read_text())
        config = DatasetConfig.from_dict({**info, "name": info.get("model") or path.stem})
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, AttributeError) as e:
        raise ExportedModelError(f"{labels}: not a {LABELS_FILE}: {e}") from None
    except ValueError as e:
        raise ExportedModelError(f"{labels}: {e}") from None
    if config.num_classes != n:
        raise ExportedModelError(
            f"{labels} lists {config.num_classes} classes but {path.name} outputs {n}: use the "
            f"{LABELS_FILE} exported with this model"
        )
    size = info.get("input_size")
    if size is not None and tuple(size) != tuple(runner.input_size):
        raise ExportedModelError(
            f"{labels}: input_size {list(size)} does not match {path.name}'s "
            f"{list(runner.input_size)}: use the {LABELS_FILE} exported with this model"
        )
    return config
