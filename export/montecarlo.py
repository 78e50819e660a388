"""Bayesian SegNet's Monte Carlo dropout (Kendall et al., BMVC 2017) as one TFLite model.

TFLite has no dropout at run time, and no random op that XNNPACK, NNAPI or an int8 kernel runs.
So the exporter draws N dropout masks once, from a seed, and bakes them in as constants: the model
takes one frame ``[1, H, W, 3]``, tiles it into a batch of N, runs the network with sample ``i``
multiplied by mask ``i`` after every dropout layer (:class:`~segnet_tf.layers.FixedDropout`, one
MUL), and outputs the mean softmax ``[1, H, W, C]`` (``edge_demo.contract.MC_OUTPUT``). The board
takes the class map as its argmax and the uncertainty as its normalised entropy.

Fixed masks make the sampling reproducible: a still camera gets a still uncertainty map rather
than sampling noise, and the Keras network with the same masks (:func:`reference_model`) is the
exact float32 reference for the parity check. The cost is N times the inference of one frame,
plus the masks' constants (:func:`mask_values` values, one byte each in int8).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from segnet_tf.export.lowering import activation_peaks, lower_model, rebuild
from segnet_tf.layers import FixedDropout, MaxPoolingWithArgmax2D, MaxUnpooling2D
from segnet_tf.prediction import monte_carlo_dropout_layers


def dropout_masks(model: keras.Model, samples: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``{dropout layer name: [samples, h, w, c] mask}``: each element kept with probability
    ``1 - rate`` and then worth ``1 / (1 - rate)`` (inverted dropout, as Keras trains it).

    Drawn with numpy's PCG64 from ``seed``, so the same seed gives the same masks everywhere.
    """
    layers = monte_carlo_dropout_layers(model)
    if not layers:
        raise ValueError(
            f"model {model.name!r} has no Monte Carlo dropout: a Monte Carlo export needs a "
            "'bayesian-segnet' model"
        )
    if samples < 2:
        raise ValueError(f"Monte Carlo samples must be >= 2, got {samples}")
    rng = np.random.default_rng(seed)
    masks = {}
    for layer in layers:
        shape = tuple(layer.input.shape[1:])
        if None in shape:
            raise ValueError(f"{layer.name}: dropout input {shape} needs a fixed model input size")
        keep = rng.random((samples, *shape)) >= layer.rate
        masks[layer.name] = keep.astype(np.float32) / np.float32(1.0 - layer.rate)
    return masks


def mask_values(masks: dict[str, np.ndarray]) -> int:
    """How many constants the masks add to a model."""
    return sum(m.size for m in masks.values())


def fixed_dropout(masks: dict[str, np.ndarray]) -> Callable[[keras.layers.Layer], FixedDropout]:
    """The replacement of each Monte Carlo dropout layer by its fixed masks (see ``rebuild``)."""
    return lambda layer: FixedDropout(masks[layer.name], name=layer.name)


def sample_mean_model(network: keras.Model, samples: int) -> keras.Model:
    """``[1, H, W, 3]`` image -> mean softmax ``[1, H, W, C]`` of ``network`` (batch of exactly
    ``samples``) run on ``samples`` copies of the image: TILE, the network, SOFTMAX, MEAN."""
    shape = tuple(network.inputs[0].shape[1:])
    image = keras.Input(shape, batch_size=1, name="image")
    copies = keras.ops.tile(image, (samples, 1, 1, 1))
    probs = keras.ops.softmax(network(copies), axis=-1)
    mean = keras.ops.mean(probs, axis=0, keepdims=True)
    return keras.Model(image, mean, name=f"{network.name}_mc{samples}")


def masked_reference(model: keras.Model, masks: dict[str, np.ndarray]) -> keras.Model:
    """The trained (argmax) network, batch N, with ``masks`` as its dropout."""
    return rebuild(
        model,
        pool=lambda name: MaxPoolingWithArgmax2D(name=name),
        unpool=lambda name: MaxUnpooling2D(name=name),
        batch_size=num_samples(masks),
        dropout=fixed_dropout(masks),
    )


def reference_model(model: keras.Model, masks: dict[str, np.ndarray]) -> keras.Model:
    """What a Monte Carlo export must equal: :func:`sample_mean_model` of the masked reference."""
    return sample_mean_model(masked_reference(model, masks), num_samples(masks))


def masked_network(
    model: keras.Model, masks: dict[str, np.ndarray], lowering: str, gain: float
) -> keras.Model:
    """The lowered network, batch N, with the fixed masks (to equalize, then to
    :func:`sample_mean_model`)."""
    return lower_model(model, lowering, num_samples(masks), gain, dropout=fixed_dropout(masks))


def masked_activation_peaks(
    model: keras.Model, masks: dict[str, np.ndarray], images: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-channel ReLU peaks of the masked network over ``images``, each run as N copies under
    the N masks: int8 ranges must cover the sampled activations, which the masks scale up."""
    samples = num_samples(masks)
    tiled = np.repeat(images, samples, axis=0)
    return activation_peaks(masked_reference(model, masks), tiled, batch_size=samples)


def num_samples(masks: dict[str, np.ndarray]) -> int:
    return len(next(iter(masks.values())))
