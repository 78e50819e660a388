"""Argmax pooling and index unpooling against hand-worked examples and a numpy reference."""

from __future__ import annotations

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.trainers.trainer import model_supports_jit

import segnet_tf  # noqa: F401  (registers the layers)
from segnet_tf.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D


def numpy_unpool_of_pool(x: np.ndarray) -> np.ndarray:
    """Independent reference: the first (row-major) maximum of each 2x2 window, SAME padding."""
    n, h, w, c = x.shape
    out = np.zeros_like(x)
    for b in range(n):
        for i in range(0, h, 2):
            for j in range(0, w, 2):
                for k in range(c):
                    window = x[b, i : i + 2, j : j + 2, k]
                    di, dj = np.unravel_index(np.argmax(window), window.shape)  # first max
                    out[b, i + di, j + dj, k] = window[di, dj]
    return out


def pool_unpool(x: np.ndarray) -> np.ndarray:
    pooled, indices = MaxPoolingWithArgmax2D()(x)
    return MaxUnpooling2D()([pooled, indices, x]).numpy()


def test_4x4_by_hand():
    x = np.array([[1, 2, 5, 6], [3, 4, 7, 8], [9, 10, 13, 14], [11, 12, 15, 16]], np.float32)
    pooled, indices = MaxPoolingWithArgmax2D()(x[None, :, :, None])
    np.testing.assert_array_equal(pooled.numpy()[0, :, :, 0], [[4, 8], [12, 16]])
    # flat positions of 4, 8, 12 and 16 in the 4x4 map
    np.testing.assert_array_equal(indices.numpy()[0, :, :, 0], [[5, 7], [13, 15]])
    unpooled = MaxUnpooling2D()([pooled, indices, x[None, :, :, None]]).numpy()[0, :, :, 0]
    expected = np.zeros((4, 4), np.float32)
    expected[1, 1], expected[1, 3], expected[3, 1], expected[3, 3] = 4, 8, 12, 16
    np.testing.assert_array_equal(unpooled, expected)


def test_ties_go_to_the_first_maximum_in_row_major_order():
    x = np.array(
        [
            [0, 0, 1, 3],  # window 1: all zero -> top-left; window 2: 3 at top-right and
            [0, 0, 2, 3],  # bottom-right -> top-right
            [1, 5, 0, 0],  # window 3: 5 at top-right and bottom-left -> top-right
            [5, 2, 0, 7],  # window 4: unique 7 at bottom-right
        ],
        np.float32,
    )[None, :, :, None]
    _, indices = MaxPoolingWithArgmax2D()(x)
    np.testing.assert_array_equal(indices.numpy()[0, :, :, 0], [[0, 3], [9, 15]])
    np.testing.assert_array_equal(pool_unpool(x), numpy_unpool_of_pool(x))


@pytest.mark.parametrize("shape", [(1, 5, 7, 3), (2, 45, 61, 4), (3, 1, 1, 2)])
def test_odd_sizes_match_reference(shape):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, shape).astype(np.float32)  # small integers: many ties
    unpooled = pool_unpool(x)
    assert unpooled.shape == shape
    np.testing.assert_array_equal(unpooled, numpy_unpool_of_pool(x))


def test_dynamic_batch_in_a_functional_model():
    inputs = keras.Input((23, 45, 2))
    pooled, indices = MaxPoolingWithArgmax2D()(inputs)
    assert tuple(pooled.shape) == (None, 12, 23, 2)
    outputs = MaxUnpooling2D()([pooled * 2.0, indices, inputs])
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(1)
    for batch in (1, 4):
        x = rng.normal(size=(batch, 23, 45, 2)).astype(np.float32)
        np.testing.assert_allclose(model(x).numpy(), 2 * numpy_unpool_of_pool(x))


def test_gradients_flow_to_the_argmax_positions_only():
    x = tf.constant(np.random.default_rng(2).normal(size=(2, 5, 6, 3)).astype(np.float32))
    w = tf.constant(np.random.default_rng(3).normal(size=(2, 5, 6, 3)).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        pooled, indices = MaxPoolingWithArgmax2D()(x)
        loss = tf.reduce_sum(MaxUnpooling2D()([pooled, indices, x]) * w)
    grad = tape.gradient(loss, x).numpy()
    is_max = numpy_unpool_of_pool(x.numpy()) != 0
    np.testing.assert_allclose(grad, np.where(is_max, w.numpy(), 0.0), rtol=1e-6)


def test_layers_opt_out_of_xla(tmp_path):
    """MaxPoolWithArgmax has no XLA kernel: Keras 3 jit-compiles ``fit``'s step on an accelerator
    unless a layer declares ``supports_jit = False``. A CPU-only machine never jit-compiles, so the
    declaration itself is what is tested, on a built and on a reloaded model."""
    model = segnet_tf.build_model("segnet-basic", (32, 32, 3), 3)
    model.save(tmp_path / "m.keras")
    expected = {f"block{s}_pool" for s in range(1, 5)} | {f"decoder{s}_unpool" for s in range(1, 5)}
    for network in (model, keras.models.load_model(tmp_path / "m.keras")):
        assert {layer.name for layer in network.layers if not layer.supports_jit} == expected
        assert model_supports_jit(network) is False  # the rule compile(jit_compile="auto") applies
    inputs = keras.Input((32, 32, 3))
    plain = keras.Model(inputs, keras.layers.MaxPooling2D()(inputs))
    assert model_supports_jit(plain) is True  # without those layers Keras would jit-compile


def test_saved_model_reloads_without_custom_objects(tmp_path):
    model = segnet_tf.build_model("segnet-lite", (45, 61, 3), 4)
    x = np.random.default_rng(4).uniform(0, 255, (2, 45, 61, 3)).astype(np.float32)
    path = tmp_path / "m.keras"
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", model.predict(x, verbose=0))
    code = (
        "import numpy as np, keras, segnet_tf\n"
        f"m = keras.models.load_model({str(path)!r})\n"
        f"y = m.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0)\n"
        f"np.testing.assert_allclose(y, np.load({str(tmp_path / 'y.npy')!r}), atol=1e-5)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
