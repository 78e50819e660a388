"""The builtin-op lowering of argmax pooling/unpooling equals the reference, ties included."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import segnet_tf
from segnet_tf.export.lowering import (
    activation_peaks,
    equalize_activations,
    lower_model,
)
from segnet_tf.export.savedmodel import save_serving_model
from segnet_tf.export.tflite import TFLiteModel, convert
from segnet_tf.layers import (
    ACTIVATION_RANGE,
    FLOAT_STEP_GAIN,
    LOWERINGS,
    POOLED_LOWERINGS,
    STEP_GAIN,
    MaskedUnpooling2D,
    MaxPoolingWithArgmax2D,
    MaxPoolingWithMask2D,
    MaxUnpooling2D,
    window_priority,
)


def reference_unpool(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    pooled, indices = MaxPoolingWithArgmax2D()(x)
    assert pooled.shape == y.shape
    return MaxUnpooling2D()([y, indices, x]).numpy()


def lowered_unpool(x: np.ndarray, y: np.ndarray, lowering: str, gain: float = 1.0) -> np.ndarray:
    _, mask = MaxPoolingWithMask2D(lowering, gain)(x)
    return MaskedUnpooling2D(lowering)([y, mask, x]).numpy()


def test_window_priority_ranks_the_window_in_row_major_order():
    np.testing.assert_array_equal(
        window_priority(3, 5)[0, :, :, 0],
        [[4, 3, 4, 3, 4], [2, 1, 2, 1, 2], [4, 3, 4, 3, 4]],
    )


# Hand-built ties: all-zero window, two equal maxima on the diagonal, a full row of maxima,
# and a unique maximum; plus the odd column and row that SAME padding leaves alone.
TIES = np.array(
    [
        [0, 0, 2, 1, 7],
        [0, 0, 1, 2, 7],
        [3, 3, 0, 5, 1],
        [1, 0, 5, 5, 0],
        [6, 6, 0, 0, 9],
    ],
    np.float32,
)[None, :, :, None]


@pytest.mark.parametrize("lowering", LOWERINGS)
def test_hand_built_ties(lowering):
    y = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1) * 10
    got = lowered_unpool(TIES, y, lowering)[0, :, :, 0]
    expected = np.zeros((5, 5), np.float32)
    for (r, c), value in {
        (0, 0): 10,
        (0, 2): 20,
        (0, 4): 30,  # zeros -> top-left; 2s on the diagonal -> top-left
        (2, 0): 40,
        (2, 3): 50,
        (2, 4): 60,  # 3 3 row -> left; 5 at TR and BL/BR -> TR
        (4, 0): 70,
        (4, 2): 80,
        (4, 4): 90,  # last row: windows of one row
    }.items():
        expected[r, c] = value
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, reference_unpool(TIES, y)[0, :, :, 0])


@pytest.mark.parametrize("shape", [(1, 8, 8, 3), (2, 45, 61, 4), (1, 23, 1, 2)])
@pytest.mark.parametrize("lowering", LOWERINGS)
def test_matches_reference_on_tie_heavy_maps(shape, lowering):
    rng = np.random.default_rng(sum(shape))
    x = np.maximum(rng.integers(-2, 3, shape), 0).astype(np.float32)  # ReLU'd small ints: ~60% ties
    pooled_shape = (shape[0], -(-shape[1] // 2), -(-shape[2] // 2), shape[3])
    y = rng.normal(size=pooled_shape).astype(np.float32)
    # integer maps differ by >= 1 where they differ, so a gain of 1 makes the step exact here
    np.testing.assert_array_equal(lowered_unpool(x, y, lowering), reference_unpool(x, y))


@pytest.mark.parametrize("lowering", POOLED_LOWERINGS)
def test_float_step_equals_equality_on_continuous_maps(lowering):
    rng = np.random.default_rng(7)
    x = np.maximum(rng.normal(size=(2, 45, 61, 8)), 0).astype(np.float32)  # half zeros: ties
    x[0, 0, 1, 0] = np.nextafter(x[0, 0, 0, 0], np.float32(np.inf))  # one ulp apart
    x[1, 2, 2, 1] = x[1, 2, 3, 1] = 3e38  # near float32's maximum: gain * difference overflows
    y = rng.normal(size=(2, 23, 31, 8)).astype(np.float32)
    got = lowered_unpool(x, y, lowering, FLOAT_STEP_GAIN)
    np.testing.assert_array_equal(got, reference_unpool(x, y))


@pytest.mark.parametrize("name", segnet_tf.list_models())
@pytest.mark.parametrize("lowering", ["exact", "step-conv"])
def test_lowered_model_equals_the_argmax_model_bit_for_bit(name, lowering):
    """Run by TensorFlow, the lowered network's logits are the reference's, to the last bit: the
    unpooled maps are equal and the same convolutions run on them."""
    model = segnet_tf.build_model(name, (45, 61, 3), 6)
    gain = FLOAT_STEP_GAIN if lowering == "step-conv" else STEP_GAIN
    lowered = lower_model(model, lowering, gain=gain)
    x = np.random.default_rng(0).uniform(0, 255, (1, 45, 61, 3)).astype(np.float32)
    ref, low = model.predict(x, verbose=0), lowered.predict(x, verbose=0)
    np.testing.assert_array_equal(low, ref)


def test_equalized_activations_span_0_to_6_and_keep_the_function():
    model = segnet_tf.build_model("segnet-basic", (45, 61, 3), 3)
    images = np.random.default_rng(0).uniform(0, 255, (3, 45, 61, 3)).astype(np.float32)
    lowered = lower_model(model, "exact")
    equalize_activations(lowered, activation_peaks(model, images))
    peaks = activation_peaks(lowered, images)
    assert set(peaks) == {f"block{i}_conv1_relu" for i in range(1, 5)}  # linear decoder: none
    for peak in peaks.values():  # every live channel now peaks at exactly 6 on these images
        np.testing.assert_allclose(peak[peak > 0], 6.0, rtol=1e-4)
    np.testing.assert_allclose(
        lowered.predict(images, batch_size=1, verbose=0),
        model.predict(images, verbose=0),
        rtol=1e-3,
        atol=1e-3,
    )


def test_step_lowering_refuses_pooling_inputs_that_can_be_negative():
    # its zero padding of odd maps is only exact on ReLU outputs
    inputs = keras.Input((9, 9, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="linear_conv")(inputs)
    pooled, indices = MaxPoolingWithArgmax2D(name="pool")(x)
    model = keras.Model(inputs, MaxUnpooling2D()([pooled, indices, x]))
    with pytest.raises(ValueError, match="'pool' reads 'linear_conv', not a ReLU output"):
        lower_model(model, "step")
    lower_model(model, "exact")  # no such assumption


@pytest.mark.slow
@pytest.mark.parametrize("lowering", POOLED_LOWERINGS)
def test_int8_step_mask_is_exact_on_int8_codes(lowering, tmp_path):
    """Converted to int8, the pooled lowerings put every value at the argmax of the int8 codes:
    their 0/1 flags are exact codes, so no value leaks to a neighbour, ties included."""
    shape = (45, 61, 8)
    x_in = keras.Input(shape, batch_size=1)
    x = keras.layers.ReLU(max_value=ACTIVATION_RANGE)(x_in)  # an equalized pooling input
    pooled, mask = MaxPoolingWithMask2D(lowering, STEP_GAIN)(x)
    model = keras.Model(x_in, MaskedUnpooling2D(lowering)([pooled + 1.0, mask, x]))
    rng = np.random.default_rng(0)

    def sample():  # values on the int8 grid of [0, 6], a third of them 0: ties everywhere
        codes = np.maximum(rng.integers(-128, 256, (1, *shape)), 0)
        return (codes * (ACTIVATION_RANGE / 255)).astype(np.float32)

    save_serving_model(model, tmp_path / "saved", batch_size=1)
    calibration = [[sample()] for _ in range(8)]
    runner = TFLiteModel(convert(tmp_path / "saved", "int8", lambda: iter(calibration)))
    x = sample()[0]
    got = runner(x)
    scale, zero = runner.input["quantization"]
    x = (runner.quantize_input(x).astype(np.float32) - zero) * scale  # what the int8 model saw
    pooled = MaxPoolingWithArgmax2D()(x)[0].numpy()
    want = reference_unpool(x, pooled + 1.0)[0]
    np.testing.assert_array_equal(got != 0, want != 0)  # every value at its argmax, none leaked
    np.testing.assert_allclose(got, want, atol=runner.output["quantization"][0])  # one code
