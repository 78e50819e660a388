"""Every decoder of the paper's study exports: builtin ops only, float32 class maps equal Keras's,
int8 end to end, the Edge TPU's op list where the decoder allows; and the int8 equalization
undoes its scales through every decoder's wiring (concatenation, transposed and depthwise
convolutions), leaving alone the ReLUs it cannot."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

import segnet_tf
from segnet_tf.export import ExportOptions, export_model
from segnet_tf.export.calibration import representative_dataset
from segnet_tf.export.edgetpu import edgetpu_problems
from segnet_tf.export.exporter import FORMATS
from segnet_tf.export.lowering import (
    activation_peaks,
    equalize_activations,
    lower_model,
    relu_chain,
)
from segnet_tf.export.savedmodel import save_serving_model
from segnet_tf.export.tflite import TFLiteModel, convert, inspect_model
from segnet_tf.models import PRESETS

SIZE = (45, 61)  # odd: every upsampling is cropped back
VARIANTS = [
    (p, d) for p in ("segnet-basic", "segnet-lite") for d in PRESETS[p].decoders if d != "indices"
]
UNPOOLING = ("single-channel", "encoder-addition")  # lowered like SegNet's indices
# The op that carries each decoder's upsampling or skip into the TFLite model.
SIGNATURE_OPS = {
    "single-channel": {"DEPTHWISE_CONV_2D"},
    "encoder-addition": {"ADD"},
    "bilinear": {"RESIZE_BILINEAR"},
    "fcn": {"TRANSPOSE_CONV", "ADD"},
    "fcn-noaddition": {"TRANSPOSE_CONV"},
    "fcn-nodimreduction": {"TRANSPOSE_CONV", "ADD"},
    "fcn-noaddition-nodimreduction": {"TRANSPOSE_CONV"},
    "unet": {"TRANSPOSE_CONV", "CONCATENATION"},
}


def small_model(preset: str, decoder: str) -> keras.Model:
    keras.utils.set_random_seed(0)
    width = {"width": 0.125} if preset == "segnet-lite" else {}
    return segnet_tf.build_model(preset, (*SIZE, 3), 11, decoder=decoder, **width)


def images(count: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (count, *SIZE, 3)).astype(np.float32)


@pytest.mark.parametrize(
    ("preset", "decoder", "equalized"),
    [
        ("segnet-basic", "single-channel", 4),  # depthwise convolutions undo the scale
        ("segnet-basic", "fcn", 4),  # each pooled map also feeds a 1x1 score convolution
        ("segnet-basic", "fcn-nodimreduction", 1),  # the sums of pooled maps cannot be undone
        ("segnet-basic", "encoder-addition", 0),  # every encoder map is added to the decoder's
        ("segnet-lite", "unet", 30),  # concatenated channels are undone at their offset
    ],
)
def test_equalization_keeps_every_decoders_function(preset, decoder, equalized):
    model = small_model(preset, decoder)
    calib = images(4)
    assert len(relu_chain(model)) == equalized
    lowered = lower_model(model, "exact", batch_size=None)
    equalize_activations(lowered, activation_peaks(model, calib))
    np.testing.assert_allclose(lowered(calib), model(calib), rtol=1e-4, atol=1e-4)


def tflite_models(model: keras.Model, folder: Path, calib: np.ndarray) -> list[bytes]:
    """The float32 and int8 TFLite models of ``model``, made as the exporter makes them."""
    models = []
    for fmt in (FORMATS["tflite"], FORMATS["int8"]):
        int8 = fmt.precision == "int8"
        lowered = lower_model(model, fmt.lowering, gain=fmt.gain)
        if int8:
            equalize_activations(lowered, activation_peaks(model, calib))
        save_serving_model(lowered, folder / fmt.name, batch_size=1)
        models.append(
            convert(
                folder / fmt.name, fmt.precision, representative_dataset(calib) if int8 else None
            )
        )
    return models


def check_conversions(model: keras.Model, decoder: str, float32: bytes, int8: bytes) -> None:
    """Builtin ops carrying the decoder, int8 end to end (on the Edge TPU's op list where there
    are no switches to lower), and float32 class maps equal to Keras's."""
    infos = [inspect_model(float32), inspect_model(int8)]
    for info in infos:
        assert info.builtin_only
        assert SIGNATURE_OPS[decoder] <= set(info.ops)
    assert not {t for t in infos[1].tensor_types if t.startswith("float")}
    if decoder not in UNPOOLING:  # no switches to lower: the int8 model is the Edge TPU's too
        assert edgetpu_problems(infos[1]) == []
    runner = TFLiteModel(float32)
    x = images(3)
    want = model.predict(x, verbose=0)
    got = np.stack([runner(i) for i in x])
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
    top2 = np.sort(want, -1)[..., -2:]
    decided = top2[..., 1] - top2[..., 0] > 1e-4  # where float rounding cannot swap the two best
    np.testing.assert_array_equal(got.argmax(-1)[decided], want.argmax(-1)[decided])


# segnet-basic/fcn goes through the whole exporter below
CONVERTED = [pair for pair in VARIANTS if pair != ("segnet-basic", "fcn")]


@pytest.mark.slow
@pytest.mark.parametrize(("preset", "decoder"), CONVERTED, ids=[f"{p}/{d}" for p, d in CONVERTED])
def test_every_decoder_converts_to_builtin_float32_and_int8(preset, decoder, tmp_path):
    model = small_model(preset, decoder)
    check_conversions(model, decoder, *tflite_models(model, tmp_path, images(4, seed=2)))


@pytest.mark.slow
def test_fcn_exports_with_parity_in_the_report(tmp_path):
    model = small_model("segnet-basic", "fcn")
    model.save(tmp_path / "m.keras")
    options = ExportOptions(
        model=tmp_path / "m.keras", out=tmp_path / "out", int8=True, calib_samples=4,
        parity_samples=2,
    )  # fmt: skip
    report = export_model(options, log=lambda *_: None)
    assert report["model"] == "segnet-basic-fcn"
    assert set(report["parity"]["models"]) == {"tflite", "int8"}
    assert report["parity"]["models"]["tflite"]["pixel_agreement"] > 0.999
    out = tmp_path / "out"
    check_conversions(
        model, "fcn", (out / "model.tflite").read_bytes(), (out / "model_int8.tflite").read_bytes()
    )
