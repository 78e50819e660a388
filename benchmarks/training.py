"""Training throughput: ``scatter_nd`` unpooling against the mask lowering, with and without XLA.

Each row is one Keras ``train_on_batch`` step (SGD with momentum, the project's weighted cross
entropy with unit weights) on the same batch of synthetic street scenes, timed round-robin; a
PyTorch eager step is the peer. Rows that cannot run keep their reason: Keras silently drops
``jit_compile=True`` for the reference (its layers set ``supports_jit = False``), and the row says
so rather than timing a non-XLA step under an XLA label.

:func:`gradient_check` asks whether the lowering trains the same network: loss and gradients of
the reference and the lowered model (sharing weights) on one batch.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from benchmarks.inference import short_error
from benchmarks.timing import interleaved
from segnet_tf.data import render_scene
from segnet_tf.export.lowering import (
    lower_model,
)
from segnet_tf.losses import WeightedSparseCategoricalCrossentropy
from segnet_tf.models import build_model

REFERENCE_ROW = "scatter_nd (reference)"


def scene_batch(size: tuple[int, int], batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    scenes = [render_scene(seed + i, size) for i in range(batch)]
    images = np.stack([s[0] for s in scenes]).astype(np.float32)
    return images, np.stack([s[1] for s in scenes]).astype(np.int32)


def loss_for(model: keras.Model) -> keras.losses.Loss:
    return WeightedSparseCategoricalCrossentropy([1.0] * int(model.outputs[0].shape[-1]))


def compiled(model: keras.Model, jit: bool) -> keras.Model:
    """``model`` compiled for training; raises when Keras would not honour ``jit_compile=True``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.compile(
            optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
            loss=loss_for(model),
            jit_compile=jit,
        )
    if jit and not model.jit_compile:
        said = "; ".join(str(w.message) for w in caught) or "jit_compile was turned off"
        raise RuntimeError(f"Keras runs it without XLA: {said}")
    # Slots created inside the first traced step make tf.function trace (and XLA compile) it
    # twice: build them now, as segnet_tf.training does.
    model.optimizer.build(model.trainable_variables)
    return model


def keras_rows(name: str, size: tuple[int, int], seed: int) -> dict[str, Callable[[], keras.Model]]:
    """Row name -> a function building the compiled model (each row trains its own copy)."""

    def reference():
        keras.utils.set_random_seed(seed)
        return build_model(name, (*size, 3))

    def lowered():
        return lower_model(reference(), "exact", batch_size=None)

    return {
        REFERENCE_ROW: lambda: compiled(reference(), jit=False),
        "scatter_nd + jit_compile=True": lambda: compiled(reference(), jit=True),
        "mask lowering": lambda: compiled(lowered(), jit=False),
        "mask lowering + jit_compile=True (XLA)": lambda: compiled(lowered(), jit=True),
    }


def torch_step(
    name: str, images: np.ndarray, labels: np.ndarray, threads: int, device: str = "cpu"
):
    """One PyTorch SGD step on ``images``/``labels`` (same optimiser as the Keras rows)."""
    import torch

    from benchmarks import torch_segnet

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    num_classes = int(labels.max()) + 1
    net = torch_segnet.TorchSegNet(**torch_segnet.torch_config(name, max(num_classes, 11)))
    net = net.to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)
    y = torch.from_numpy(labels.astype(np.int64)).to(device)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        return loss.item()  # syncs a GPU too

    return step


def training_table(
    name: str,
    size: tuple[int, int],
    batch: int,
    threads: int,
    rounds: int,
    budget_s: float | None = None,
    torch: bool = True,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict:
    log(f"training: {name} {size[0]}x{size[1]}, batch {batch}, {threads} threads")
    images, labels = scene_batch(size, batch, seed)
    steps: dict[str, Callable[[], object]] = {}
    errors: dict[str, str] = {}
    builders: dict[str, Callable[[], Callable[[], object]]] = {
        row: (lambda b=b: _keras_step(b(), images, labels))
        for row, b in keras_rows(name, size, seed).items()
    }
    if torch:
        builders["PyTorch eager (MaxUnpool2d)"] = lambda: torch_step(name, images, labels, threads)
    for row, build in builders.items():
        if row.startswith("PyTorch") and importlib.util.find_spec("torch") is None:
            errors[row] = "not installed: torch (pip install torch)"
            continue
        try:
            step = build()
            step()  # trace / compile / first allocation
            steps[row] = step
        except Exception as e:
            errors[row] = short_error(e)
            log(f"  {row}: {errors[row]}")
    stats = interleaved(steps, rounds, warmup=0, budget_s=budget_s, min_rounds=2, log=log)
    ref = stats.get(REFERENCE_ROW)
    table = []
    for row in builders:
        entry: dict = {"name": row, "error": errors.get(row)}
        if row in stats:
            s = stats[row]
            entry.update(
                s.to_dict(),
                images_per_s=batch * 1e3 / s.median_ms,
                speedup_vs_reference=ref.median_ms / s.median_ms if ref else None,
            )
        table.append(entry)
    return {"model": name, "size": list(size), "batch": batch, "threads": threads, "rows": table}


def _keras_step(model: keras.Model, images: np.ndarray, labels: np.ndarray):
    return lambda: model.train_on_batch(images, labels)


def loss_and_gradients(model: keras.Model, images, labels, jit: bool = False):
    loss_fn = loss_for(model)

    def compute(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        return loss, tape.gradient(loss, model.trainable_variables)

    loss, grads = tf.function(compute, jit_compile=jit)(images, labels)
    return float(loss), [g.numpy() for g in grads]


def gradient_check(name: str, size: tuple[int, int], batch: int = 2, seed: int = 0) -> dict:
    """Loss and gradients of the reference and the lowered model on one batch, same weights.

    Batch norm runs in training mode (batch statistics), as in a real step. The lowered models
    (``segnet_tf.export.lowering``'s ``exact``) is checked in graph mode and under XLA.
    """
    keras.utils.set_random_seed(seed)
    reference = build_model(name, (*size, 3))
    candidates = {"lowered": lower_model(reference, "exact", batch_size=None)}
    images, labels = scene_batch(size, batch, seed)
    ref_loss, ref_grads = loss_and_gradients(reference, images, labels)
    out = {"model": name, "size": list(size), "batch": batch, "reference_loss": ref_loss}
    for label, model, jit in [
        (f"{k}{x}", m, j) for k, m in candidates.items() for x, j in (("", False), ("_xla", True))
    ]:
        try:
            loss, grads = loss_and_gradients(model, images, labels, jit=jit)
        except Exception as e:
            out[label] = {"error": short_error(e)}
            continue
        rel = [
            float(np.max(np.abs(g - r)) / max(float(np.max(np.abs(r))), 1e-30))
            for g, r in zip(grads, ref_grads, strict=True)
        ]
        out[label] = {
            "loss": loss,
            "loss_abs_diff": abs(loss - ref_loss),
            "max_grad_rel_diff": max(rel),
            "identical_gradients": sum(
                bool(np.array_equal(g, r)) for g, r in zip(grads, ref_grads, strict=True)
            ),
            "gradients": len(grads),
        }
    return out
