"""Every file a benchmark row runs, for one model at one input size, built once and reused.

Random weights (seeded) are fine for timing: no kernel's speed depends on the values, except the
lowering's tie handling, which costs the same whatever the ties are. Calibration for int8 uses
the built-in synthetic street scenes at the model's size.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from benchmarks.floor import floor_model
from segnet_tf.data import render_scene
from segnet_tf.export.calibration import representative_dataset
from segnet_tf.export.lowering import (
    activation_peaks,
    equalize_activations,
    lower_model,
)
from segnet_tf.export.savedmodel import save_serving_model
from segnet_tf.export.tflite import convert
from segnet_tf.layers import (
    FLOAT_STEP_GAIN,
    POOLED_LOWERINGS,
)
from segnet_tf.models import build_model

# lowered: the ``exact`` lowering (float16 exports); step / step-conv / edgetpu: the int8
# lowerings, with equalized activations as ``segnet-tf export`` builds them; <lowering>-2^126: a
# pooled lowering with the gain that saturates on any normal float difference (float32 exports);
# floor-resize: the floor with RESIZE_NEAREST_NEIGHBOR upsampling.
INT8_LOWERINGS = ("step", "step-conv", "edgetpu")
FLOAT_GAIN_SUFFIX = "-2^126"
VARIANTS = (
    "reference",
    "lowered",
    *INT8_LOWERINGS,
    *(f"{lowering}{FLOAT_GAIN_SUFFIX}" for lowering in POOLED_LOWERINGS),
    "floor",
    "floor-resize",
)
# The variant that `segnet-tf export` ships for each TFLite precision (exporter.FORMATS).
EXPORT_VARIANT = {"float32": "step-conv-2^126", "float16": "lowered", "int8": "step"}
ONNX_OPSET = 17


class Artifacts:
    """Builds (lazily, memoised) the Keras model and its exports under ``work/<name>-<H>x<W>``."""

    def __init__(
        self,
        name: str,
        size: tuple[int, int],
        work: Path,
        calib_images: int = 8,
        seed: int = 0,
        log: Callable[[str], None] = print,
    ):
        self.name, self.size, self.seed, self.log = name, tuple(size), seed, log
        self.calib_images = calib_images
        self.dir = Path(work) / f"{name}-{size[0]}x{size[1]}"
        self.dir.mkdir(parents=True, exist_ok=True)
        keras.utils.set_random_seed(seed)
        self.model = build_model(name, (*size, 3))

    @property
    def label(self) -> str:
        return f"{self.name} {self.size[0]}x{self.size[1]}"

    @functools.cached_property
    def image(self) -> np.ndarray:
        """One street scene ``[H, W, 3]`` float32 0..255: the input of every timed call."""
        return render_scene(self.seed, self.size)[0].astype(np.float32)

    @functools.cached_property
    def image_file(self) -> Path:
        path = self.dir / "image.npy"
        np.save(path, self.image)
        return path

    @functools.cached_property
    def calibration(self) -> np.ndarray:
        scenes = [render_scene(1000 + i, self.size)[0] for i in range(self.calib_images)]
        return np.stack(scenes).astype(np.float32)

    @functools.cached_property
    def keras_file(self) -> Path:
        path = self.dir / "model.keras"
        self.model.save(path)
        return path

    def network(self, variant: str) -> keras.Model:
        """One of :data:`VARIANTS`; all but the reference have batch 1."""
        if variant == "reference":
            return self.model
        if variant == "lowered":
            return lower_model(self.model, "exact", batch_size=1)
        if variant in INT8_LOWERINGS:
            lowered = lower_model(self.model, variant, batch_size=1)
            equalize_activations(lowered, activation_peaks(self.model, self.calibration))
            return lowered
        if variant in VARIANTS and variant.endswith(FLOAT_GAIN_SUFFIX):
            lowering = variant.removesuffix(FLOAT_GAIN_SUFFIX)
            return lower_model(self.model, lowering, batch_size=1, gain=FLOAT_STEP_GAIN)
        if variant in ("floor", "floor-resize"):
            lowering = "edgetpu" if variant == "floor-resize" else "exact"
            return floor_model(self.model, batch_size=1, lowering=lowering)
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")

    @functools.cache  # noqa: B019  (one Artifacts per model and size, alive for the whole run)
    def saved_model(self, variant: str) -> Path:
        """SavedModel of ``variant``: the reference with a dynamic batch (the serving export),
        the others with batch 1 (the converter's input, as in ``segnet-tf export``)."""
        path = self.dir / f"saved_model_{variant}"
        batch = None if variant == "reference" else 1
        self._timed(f"SavedModel {variant}", save_serving_model, self.network(variant), path, batch)
        return path

    @functools.cache  # noqa: B019
    def tflite(self, variant: str, precision: str) -> Path:
        rep = representative_dataset(self.calibration) if precision == "int8" else None
        content = self._timed(
            f"TFLite {variant} {precision}", convert, self.saved_model(variant), precision, rep
        )
        path = self.dir / f"{variant}_{precision}.tflite"
        path.write_bytes(content)
        return path

    @functools.cached_property
    def flex_tflite(self) -> Path:
        """The naive conversion of the reference: argmax pooling as a Flex (TensorFlow) op."""

        def flex():
            converter = tf.lite.TFLiteConverter.from_saved_model(str(self.saved_model("reference")))
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.TFLITE_BUILTINS,
                tf.lite.OpsSet.SELECT_TF_OPS,
            ]
            return converter.convert()

        path = self.dir / "reference_flex.tflite"
        path.write_bytes(self._timed("TFLite Flex", flex))
        return path

    @functools.cached_property
    def onnx_file(self) -> Path:
        """tf2onnx of the reference Keras model: MaxPool with indices + ScatterND."""
        import tf2onnx

        spec = (tf.TensorSpec((1, *self.size, 3), tf.float32, name="image"),)
        proto, _ = self._timed(
            "ONNX (tf2onnx)",
            tf2onnx.convert.from_keras,
            self.model,
            input_signature=spec,
            opset=ONNX_OPSET,
        )
        path = self.dir / "reference.onnx"
        path.write_bytes(proto.SerializeToString())
        return path

    @functools.cached_property
    def lowered_onnx_file(self) -> Path:
        """``segnet-tf export --onnx``'s model.onnx: the exact lowering, TensorRT's op set."""
        from segnet_tf.export.onnx import convert as onnx_convert

        content = self._timed("ONNX model.onnx", onnx_convert, self.network("lowered"))
        path = self.dir / "model.onnx"
        path.write_bytes(content)
        return path

    @functools.cached_property
    def torch_file(self) -> Path:
        from benchmarks import torch_segnet

        num_classes = int(self.model.outputs[0].shape[-1])
        net = torch_segnet.TorchSegNet(**torch_segnet.torch_config(self.name, num_classes))
        path = self.dir / "torch_segnet.pt"
        torch_segnet.save(net, path)
        return path

    def _timed(self, what: str, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.log(f"  built {what} for {self.label} in {time.perf_counter() - start:.1f} s")
        return out


def file_size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (SavedModel)."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
