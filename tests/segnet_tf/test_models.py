"""Model presets: paper parameter counts, any input size, early errors, Bayesian sampling, VGG16
init."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

import segnet_tf
from segnet_tf.layers import MaxPoolingWithArgmax2D, MonteCarloDropout
from segnet_tf.models.blocks import ENCODER_PREFIX, encoder_stages
from segnet_tf.models.segnet import IMAGENET_MEAN


def test_segnet_has_the_papers_29_4m_parameters():
    model = segnet_tf.build_model("segnet", (360, 480, 3), 11)
    assert abs(model.count_params() - 29.4e6) < 0.1e6
    assert sum(isinstance(layer, MaxPoolingWithArgmax2D) for layer in model.layers) == 5
    # 13 encoder convs; the decoder mirrors them, its 13th being the 1x1 classifier.
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in model.layers) == 13 + 12 + 1


def test_segnet_basic_is_four_stages_of_64_7x7_filters():
    model = segnet_tf.build_model("segnet-basic", (360, 480, 3), 11)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.kernel_size for c in convs[:-1]] == [(7, 7)] * 8
    assert {c.filters for c in convs[:-1]} == {64}
    assert convs[-1].kernel_size == (1, 1)


def test_segnet_lite_is_a_quarter_width():
    lite = segnet_tf.build_model("segnet-lite", (360, 480, 3), 11)
    assert lite.get_layer("block1_conv1").filters == 16
    assert lite.get_layer("block5_conv3").filters == 128
    assert lite.count_params() < 2.0e6


@pytest.mark.parametrize("name", segnet_tf.list_models())
def test_every_preset_takes_an_odd_size_and_any_batch(name):
    model = segnet_tf.build_model(name, (45, 61, 3), 5)
    for batch in (1, 2):
        x = np.random.default_rng(batch).uniform(0, 255, (batch, 45, 61, 3)).astype(np.float32)
        assert model(x).shape == (batch, 45, 61, 5)


def test_too_small_input_fails_early_with_a_fix():
    with pytest.raises(ValueError, match="at least 32"):
        segnet_tf.build_model("segnet", (20, 480, 3), 11)
    with pytest.raises(ValueError, match=r"\(height, width, 3\)"):
        segnet_tf.build_model("segnet-lite", (64, 64, 1), 11)
    with pytest.raises(ValueError, match="choose one of"):
        segnet_tf.build_model("unet", (64, 64, 3), 11)


def test_bayesian_segnet_samples_only_when_asked():
    model = segnet_tf.build_model("bayesian-segnet", (32, 32, 3), 3, width=0.125)
    dropouts = [layer for layer in model.layers if isinstance(layer, MonteCarloDropout)]
    assert len(dropouts) == 6
    x = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())
    for layer in dropouts:
        layer.sampling = True
    assert not np.allclose(model(x).numpy(), model(x).numpy())


@pytest.mark.slow
def test_vgg16_weights_from_a_local_file_are_equivalent(tmp_path):
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16.weights.h5"
    vgg.save_weights(path)
    model = segnet_tf.build_model("segnet", (32, 32, 3), 11, encoder_weights=str(path))
    np.testing.assert_array_equal(
        model.get_layer("block3_conv2").kernel.numpy(), vgg.get_layer("block3_conv2").kernel.numpy()
    )
    # First conv without bias: ours on RGB (normalised inside) == VGG16 on Caffe BGR minus mean.
    x = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype(np.float32)
    ours = keras.Model(model.input, model.get_layer("block1_conv1").output)(x).numpy()
    caffe = (x - np.asarray(IMAGENET_MEAN, np.float32))[..., ::-1]
    theirs = keras.ops.conv(caffe, vgg.get_layer("block1_conv1").kernel, padding="same").numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=1e-3)


def test_missing_encoder_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        segnet_tf.build_model("segnet", (32, 32, 3), 11, encoder_weights=str(tmp_path / "x.h5"))


def test_transfer_weights_copies_matching_layers_and_keeps_a_new_classifier(tmp_path):
    keras.utils.set_random_seed(1)
    donor = segnet_tf.build_model("segnet-lite", (32, 32, 3), 11)
    donor.save(tmp_path / "donor.keras")
    keras.utils.set_random_seed(2)
    model = segnet_tf.build_model("segnet-lite", (64, 96, 3), 5)  # other size, 5 classes
    fresh = model.get_layer("classifier").kernel.numpy()

    assert segnet_tf.models.transfer_weights(model, tmp_path / "donor.keras") == ["classifier"]
    for layer in donor.layers:
        if layer.weights and layer.name != "classifier":
            for mine, theirs in zip(
                model.get_layer(layer.name).get_weights(), layer.get_weights(), strict=True
            ):
                np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(model.get_layer("classifier").kernel.numpy(), fresh)

    other = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 1, name="block1_conv1")]
    )
    other.save(tmp_path / "other.keras")
    with pytest.raises(ValueError, match="no layer matches 'segnet-lite' by name and shape"):
        segnet_tf.models.transfer_weights(model, tmp_path / "other.keras")


def test_load_model_finds_the_model_of_a_run_dir_or_a_shipped_folder(tmp_path):
    keras.utils.set_random_seed(0)
    model = segnet_tf.build_model("segnet-basic", (32, 32, 3), 3)
    for folder, name in (("run", "best.keras"), ("shipped", "model.keras")):
        (tmp_path / folder).mkdir()
        model.save(tmp_path / folder / name)
        loaded = segnet_tf.load_model(tmp_path / folder)
        np.testing.assert_array_equal(loaded.get_weights()[0], model.get_weights()[0])
    with pytest.raises(FileNotFoundError, match="a folder holding best.keras or model.keras"):
        segnet_tf.load_model(tmp_path)


@pytest.mark.parametrize(
    ("name", "decoder", "convs"),
    [("segnet-lite", "indices", (2, 2, 3, 3, 3)), ("segnet-basic", "fcn", (1, 1, 1, 1))],
)
def test_encoder_stages_are_found_again_in_a_saved_model(name, decoder, convs, tmp_path):
    segnet_tf.build_model(name, (45, 61, 3), 5, decoder=decoder).save(tmp_path / "m.keras")
    stages = encoder_stages(segnet_tf.load_model(tmp_path / "m.keras"))
    assert [s.pool.name for s in stages] == [f"block{s}_pool" for s in range(1, len(convs) + 1)]
    # each pools the ReLU of its stage's last convolution
    assert [s.source.name for s in stages] == [
        f"block{s}_conv{n}_relu" for s, n in enumerate(convs, start=1)
    ]
    inputs = keras.Input((8, 8, 3))
    assert encoder_stages(keras.Model(inputs, keras.layers.MaxPooling2D()(inputs))) == []


@pytest.mark.parametrize(
    ("name", "decoder"), [("segnet-lite", "fcn"), ("segnet-lite", "unet"), ("segnet-basic", "fcn")]
)
def test_only_encoder_layers_carry_the_encoder_prefix(name, decoder):
    """Freezing the encoder and its learning-rate multiplier select layers by this prefix: FCN's
    score heads read encoder maps but belong to the decoder."""
    model = segnet_tf.build_model(name, (None, None, 3), 5, decoder=decoder, bayesian=True)
    names = [layer.name for layer in model.layers]
    encoder = [n for n in names if n.startswith(ENCODER_PREFIX)]
    pattern = re.compile(rf"{ENCODER_PREFIX}\d+_(conv\d+(_bn|_relu)?|pool|dropout)")
    assert encoder and all(pattern.fullmatch(n) for n in encoder), encoder
    assert ("decoder1_score" in names) == (decoder == "fcn")
