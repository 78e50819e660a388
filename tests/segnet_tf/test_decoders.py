"""The paper's decoder variants: Table 1's parameter counts, every (preset, decoder) pair on odd
sizes, the bilinear start of FCN's upsampling, kept memory worked by hand, early errors, and the
shipped model still built layer for layer by the default decoder."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

import segnet_tf
from segnet_tf.cli import cli
from segnet_tf.config import TrainConfig
from segnet_tf.layers import BilinearUpsampling
from segnet_tf.models import PRESETS
from segnet_tf.models.blocks import decoder_stages
from segnet_tf.models.costs import forward_ms, forward_peak_mb
from segnet_tf.models.decoders import TABLE_1, kept_bytes
from segnet_tf.models.segnet import VGG16_STAGES, scale_stages
from segnet_tf.training import prepare_run_dir

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "segnet-lite-camvid" / "model.keras"
# The decoders besides SegNet's own (every preset's indices model is tested in test_models.py);
# segnet at width 0.125 would repeat segnet-lite.
VARIANTS = [
    (p, d) for p in ("segnet-basic", "segnet-lite") for d in PRESETS[p].decoders if d != "indices"
]


@pytest.mark.parametrize("decoder", list(TABLE_1))
def test_segnet_basic_variants_have_the_papers_parameter_counts(decoder):
    model = segnet_tf.build_model("segnet-basic", (None, None, 3), 11, decoder=decoder)
    paper = TABLE_1[decoder].params_m * 1e6
    assert abs(model.count_params() / paper - 1) < 0.03, (model.count_params(), paper)


def conv(k: int, c_in: int, c_out: int) -> int:
    return k * k * c_in * c_out


def test_vgg_decoders_have_the_counts_worked_by_hand():
    k = 11
    stages = scale_stages(VGG16_STAGES, 0.25)  # segnet-lite: same topology, cheaper to build
    encoder, c_in = 0, 3
    for stage in stages:
        for c in stage:  # 3x3 convs without bias, 4 numbers per batch-norm channel
            encoder += conv(3, c_in, c) + 4 * c
            c_in = c
    widths = [stage[-1] for stage in stages]
    bilinear = encoder + widths[-1] * k + k
    fcn = encoder + sum(c * k + k for c in widths) + 5 * conv(8, k, k)
    unet = encoder + widths[0] * k + k
    for s, stage in zip(range(5, 0, -1), decoder_stages(stages), strict=True):
        up = widths[s - 1]  # the up-convolution reaches the width of the map it concatenates
        unet += conv(2, c_in, up) + 4 * up
        c_in = 2 * up
        for c in stage:
            unet += conv(3, c_in, c) + 4 * c
            c_in = c
    for decoder, want in (("bilinear", bilinear), ("fcn", fcn), ("unet", unet)):
        model = segnet_tf.build_model("segnet-lite", (None, None, 3), k, decoder=decoder)
        assert model.count_params() == want, decoder
        assert model.name == f"segnet-lite-{decoder}"


@pytest.mark.parametrize(("preset", "decoder"), VARIANTS, ids=[f"{p}/{d}" for p, d in VARIANTS])
def test_every_variant_takes_an_odd_size_and_any_batch(preset, decoder):
    width = {"width": 0.125} if preset == "segnet-lite" else {}
    model = segnet_tf.build_model(preset, (45, 61, 3), 5, decoder=decoder, **width)
    x = np.random.default_rng(0).uniform(0, 255, (2, 45, 61, 3)).astype(np.float32)
    assert model(x).shape == (2, 45, 61, 5)
    assert model(x[:1]).shape == (1, 45, 61, 5)
    indices = any(isinstance(la, segnet_tf.layers.MaxPoolingWithArgmax2D) for la in model.layers)
    assert indices == (decoder in ("single-channel", "encoder-addition"))


def test_unsupported_decoders_fail_early_listing_what_works(tmp_path):
    with pytest.raises(ValueError, match="its decoders are: indices, bilinear, fcn, unet"):
        segnet_tf.build_model("segnet", (64, 64, 3), 11, decoder="single-channel")
    with pytest.raises(ValueError, match="its decoders are: indices$"):
        segnet_tf.build_model("bayesian-segnet", (64, 64, 3), 11, decoder="fcn")
    with pytest.raises(ValueError, match="unknown decoder 'deconvnet'; choose one of: indices"):
        segnet_tf.build_model("segnet-basic", (64, 64, 3), 11, decoder="deconvnet")
    with pytest.raises(ValueError, match="'segnet-lite' has no decoder 'encoder-addition'"):
        prepare_run_dir(TrainConfig(out=str(tmp_path / "r"), decoder="encoder-addition"))
    result = CliRunner().invoke(cli, ["train", "--decoder", "fcn-x", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "unknown decoder 'fcn-x'" in result.output
    assert "Traceback" not in result.output


def test_fcn_upsampling_starts_as_bilinear_interpolation():
    x = np.random.default_rng(0).normal(size=(1, 5, 7, 3)).astype(np.float32)
    deconv = keras.layers.Conv2DTranspose(
        3, 8, strides=2, padding="same", use_bias=False, kernel_initializer=BilinearUpsampling()
    )
    got = deconv(x).numpy()
    want = tf.image.resize(x, (10, 14), "bilinear").numpy()
    # equal away from the border, where resize repeats the edge and the convolution pads zeros
    np.testing.assert_allclose(got[:, 1:-1, 1:-1], want[:, 1:-1, 1:-1], atol=1e-5)
    # each channel from itself only: 1/4, 3/4, 3/4, 1/4 along each axis
    kernel = deconv.kernel.numpy()
    np.testing.assert_array_equal(kernel[:, :, 0, 1], 0)
    np.testing.assert_allclose(kernel[2:6, 3, 0, 0], [0.1875, 0.5625, 0.5625, 0.1875])


def test_kept_memory_worked_by_hand():
    # segnet-basic at 45x61: stages pool 45x61 -> 23x31 -> 12x16 -> 6x8 -> 3x4, 64 channels each
    models = {
        d: segnet_tf.build_model("segnet-basic", (45, 61, 3), 11, decoder=d)
        for d in ("indices", "encoder-addition", "fcn", "fcn-nodimreduction", "bilinear")
    }
    pooled = [(23, 31), (12, 16), (6, 8), (3, 4)]
    source = [(45, 61), (23, 31), (12, 16), (6, 8)]
    switches = sum(-(-h * w * 64 * 2 // 8) for h, w in pooled)
    assert kept_bytes(models["indices"], "indices") == switches
    full = sum(h * w * 64 * 4 for h, w in source)
    assert kept_bytes(models["encoder-addition"], "encoder-addition") == switches + full
    # FCN keeps the pooled maps it adds later, all but the deepest: as 11 scores, or in full
    assert kept_bytes(models["fcn"], "fcn") == sum(h * w * 11 * 4 for h, w in pooled[:3])
    assert kept_bytes(models["fcn-nodimreduction"], "fcn-nodimreduction") == sum(
        h * w * 64 * 4 for h, w in pooled[:3]
    )
    assert kept_bytes(models["bilinear"], "bilinear") == 0


def test_forward_cost_is_measured():
    model = segnet_tf.build_model("segnet-basic", (128, 128, 3), 11, decoder="bilinear")
    assert forward_ms(model, (128, 128), reps=2) > 0
    peaks = [forward_peak_mb("segnet-basic", "bilinear", (s, s), 11) for s in (128, 256)]
    # the pass must at least hold the first stage's 64-channel float32 map once, at either size
    assert peaks[0] >= 128 * 128 * 64 * 4 / 2**20 and peaks[1] >= 256 * 256 * 64 * 4 / 2**20


def test_models_decoders_table():
    result = CliRunner().invoke(
        cli,
        ["models", "--decoders", "--model", "segnet-lite", "--input-size", "64x64", "--reps", "0"],
    )
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.output.splitlines()[2:]]
    assert [r[1] for r in rows] == ["indices", "bilinear", "fcn", "unet"]
    kept = {r[1]: float(r[3]) for r in rows}
    assert kept["bilinear"] == 0 < kept["indices"] < kept["fcn"] < kept["unet"]
    assert {r[4] for r in rows} == {"-"}  # --reps 0: nothing measured


def test_custom_decoder_layers_save_and_load(tmp_path):
    model = segnet_tf.build_model("segnet-basic", (45, 61, 3), 11, decoder="fcn")
    model.save(tmp_path / "fcn.keras")
    loaded = segnet_tf.load_model(tmp_path / "fcn.keras")
    x = np.random.default_rng(0).uniform(0, 255, (1, 45, 61, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-5)


def test_the_shipped_model_is_still_the_default_decoder_layer_for_layer():
    shipped = segnet_tf.load_model(SHIPPED)
    rebuilt = segnet_tf.build_model(
        "segnet-lite", shipped.inputs[0].shape[1:], shipped.outputs[0].shape[-1]
    )
    assert [(la.name, type(la).__name__) for la in rebuilt.layers] == [
        (la.name, type(la).__name__) for la in shipped.layers
    ]
    rebuilt.set_weights(shipped.get_weights())
    x = np.random.default_rng(0).uniform(0, 255, (1, *shipped.inputs[0].shape[1:])).astype("f4")
    np.testing.assert_array_equal(rebuilt(x).numpy(), shipped(x).numpy())
