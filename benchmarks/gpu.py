"""On a GPU (whenever TensorFlow sees one): SegNet training and inference, float32 and mixed.

Compared with the paper's Caffe figures (SegNet, TPAMI 2017, Table 6: 360x480, forward 422.5 ms,
backward 488.7 ms on an NVIDIA Titan with cuDNN v3) and with the compute limit: the model's
convolution FLOPs (:mod:`benchmarks.flops`), three times that per training image, over the
measured time gives the achieved TFLOP/s. PyTorch rows join when a CUDA build is installed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from benchmarks.flops import TRAINING_FACTOR, forward_flops
from benchmarks.inference import short_error
from benchmarks.timing import interleaved
from benchmarks.training import compiled, scene_batch
from segnet_tf.export.lowering import (
    lower_model,
)
from segnet_tf.models import build_model

CAFFE_PAPER = {"forward_ms": 422.5, "backward_ms": 488.7, "gpu": "NVIDIA Titan (cuDNN v3)"}
POLICIES = ("float32", "mixed_float16")


def gpu_name() -> str | None:
    """The first GPU TensorFlow sees, by name; None without one."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    details = tf.config.experimental.get_device_details(gpus[0])
    return details.get("device_name", gpus[0].name)


def build(name: str, size: tuple[int, int], policy: str, variant: str, seed: int) -> keras.Model:
    """Reference or lowered model under the dtype ``policy`` (restored to float32 after)."""
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(seed)
        model = build_model(name, (*size, 3))
        return lower_model(model, "exact", batch_size=None) if variant == "lowered" else model
    finally:
        keras.config.set_dtype_policy("float32")


def keras_cases(name, size, batch, seed):
    """Row -> (images per call, builder of a zero-argument call), inference then training."""
    image, _ = scene_batch(size, 1, seed)
    images, labels = scene_batch(size, batch, seed)
    cases = {}
    for policy in POLICIES:

        def infer(policy=policy):
            model = build(name, size, policy, "reference", seed)
            call = tf.function(lambda x: model(x, training=False))
            return lambda: call(image).numpy()

        cases[f"Keras inference, {policy}"] = ("inference", 1, infer)
        for variant, jit in (("reference", False), ("lowered", False), ("lowered", True)):

            def train(policy=policy, variant=variant, jit=jit):
                model = compiled(build(name, size, policy, variant, seed), jit)
                return lambda: model.train_on_batch(images, labels)

            label = "scatter_nd" if variant == "reference" else "mask lowering"
            label += " + XLA" if jit else ""
            cases[f"Keras train step, {label}, {policy}"] = ("training", batch, train)
    return cases


def torch_cases(name, size, batch, seed, device):
    import torch

    from benchmarks import torch_segnet

    image, _ = scene_batch(size, 1, seed)
    images, labels = scene_batch(size, batch, seed)
    to_device = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2))).to(device)  # noqa: E731
    cases = {}
    for amp in (False, True):
        policy = "autocast float16" if amp else "float32"

        def infer(amp=amp):
            net = torch_segnet.TorchSegNet(**torch_segnet.torch_config(name)).to(device).eval()
            x = to_device(image)

            def call():
                with torch.inference_mode(), torch.autocast(device, torch.float16, enabled=amp):
                    return net(x).float().cpu().numpy()

            return call

        def train(amp=amp):
            net = torch_segnet.TorchSegNet(**torch_segnet.torch_config(name)).to(device).train()
            opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
            scaler = torch.amp.GradScaler(device, enabled=amp)
            x, y = to_device(images), torch.from_numpy(labels.astype(np.int64)).to(device)

            def step():
                opt.zero_grad(set_to_none=True)
                with torch.autocast(device, torch.float16, enabled=amp):
                    loss = torch.nn.functional.cross_entropy(net(x), y)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                return loss.item()

            return step

        cases[f"PyTorch inference, {policy}"] = ("inference", 1, infer)
        cases[f"PyTorch train step, {policy}"] = ("training", batch, train)
    return cases


def gpu_table(
    name: str = "segnet",
    size: tuple[int, int] = (360, 480),
    batch: int = 4,
    rounds: int = 10,
    budget_s: float | None = None,
    device: str | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict:
    """The GPU table; ``device`` defaults to the first GPU, and without one returns a note.

    (``device="/CPU:0"`` runs the same code path on the CPU: the smoke test's way to check it.)
    """
    gpu = gpu_name()
    if device is None:
        if gpu is None:
            log("gpu: no GPU present (tf.config.list_physical_devices('GPU') is empty); skipped")
            return {"gpu": None, "note": "no GPU present: section skipped"}
        device = "/GPU:0"
    on_gpu = device.upper().startswith("/GPU")
    log(f"gpu: {name} {size[0]}x{size[1]} on {device} ({gpu or 'CPU'}), training batch {batch}")
    flops = forward_flops(build_model(name, (*size, 3)))
    cases = keras_cases(name, size, batch, seed)
    if on_gpu and importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            cases.update(torch_cases(name, size, batch, seed, "cuda"))
    calls, errors = {}, {}
    with tf.device(device):
        for row, (_, _, make) in cases.items():
            try:
                call = make()
                call()
                calls[row] = call
            except Exception as e:
                errors[row] = short_error(e)
                log(f"  {row}: {errors[row]}")
        stats = interleaved(calls, rounds, warmup=1, budget_s=budget_s, log=log)
    rows = []
    for row, (what, images, _) in cases.items():
        entry = {"name": row, "what": what, "images_per_call": images, "error": errors.get(row)}
        if row in stats:
            s = stats[row]
            work = flops * (TRAINING_FACTOR if what == "training" else 1) * images
            entry.update(
                s.to_dict(),
                images_per_s=images * 1e3 / s.median_ms,
                ms_per_image=s.median_ms / images,
                achieved_tflops=work / 1e9 / s.median_ms,
            )
        rows.append(entry)
    paper_ms = CAFFE_PAPER["forward_ms"] + CAFFE_PAPER["backward_ms"]
    return {
        "gpu": gpu if on_gpu else None,
        "device": device,
        "model": name,
        "size": list(size),
        "batch": batch,
        "forward_gflop": flops / 1e9,
        "caffe_paper": {
            **CAFFE_PAPER,
            "forward_tflops": flops / 1e9 / CAFFE_PAPER["forward_ms"],
            "training_tflops": TRAINING_FACTOR * flops / 1e9 / paper_ms,
        },
        "rows": rows,
    }
