"""Parity of every exported file with the Keras model it came from, on this machine.

Each artifact runs on held-out images (LiteRT, or ONNX Runtime on the CPU): the share of pixels
whose class agrees with Keras, each model's mIoU and its change, and the median latency per
image. A Monte Carlo model is compared with Keras sampling under the same fixed masks; an ONNX
model is also run with every tensor in float16 (as TensorRT ``--fp16`` stores them).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from segnet_tf.evaluation import evaluate_predictions
from segnet_tf.export.montecarlo import reference_model
from segnet_tf.export.tflite import TFLiteModel
from segnet_tf.progress import progress


def parity_images(dataset, input_size, count: int):
    """``(split, images, labels)``: the first ``count`` images of val (else test, else train)."""
    from segnet_tf.data import make_dataset

    split = next((s for s in ("val", "test", "train") if s in dataset.splits), None)
    samples = list(dataset.split(split))[:count]
    stream = make_dataset(
        samples, dataset.config, input_size=input_size, batch_size=1, training=False, cache=False
    )
    images, labels = zip(*[(x.numpy()[0], y.numpy()[0]) for x, y in stream], strict=True)
    return split, np.stack(images), np.stack(labels)


def check_parity(
    model,
    folder: Path,
    artifacts: Mapping[str, tuple[dict, object]],
    dataset,
    input_size,
    *,
    samples: int,
    threads: int,
    layout: str = "nhwc",
    masks=None,
    log=print,
) -> dict:
    """Class-map agreement with Keras, mIoU of each model and latency per image on this machine.

    ``artifacts`` maps a format name to its report entry (given its ``parity``) and its
    :class:`segnet_tf.export.exporter.Format`. ``max_abs_diff`` of a Monte Carlo model is the
    largest difference of its mean probabilities from Keras'. ``layout`` is the ONNX files'
    (:data:`segnet_tf.export.onnx.LAYOUTS`).
    """
    split, images, labels = parity_images(dataset, input_size, samples)
    keras_maps = np.argmax(model.predict(images, batch_size=1, verbose=0), -1)
    mc_probs = None
    if masks is not None:  # Keras sampling under the same masks: the Monte Carlo models' reference
        mc_probs = reference_model(model, masks).predict(images, batch_size=1, verbose=0)
        mc_maps = mc_probs.argmax(-1)

    def scores(maps) -> dict:
        found = evaluate_predictions(labels, maps, dataset.config)
        found.pop("confusion_matrix")
        return found

    keras_scores = scores(keras_maps)
    result = {
        "images": len(images),
        "split": split,
        "keras_miou": keras_scores["miou"],
        "keras": keras_scores,
        "models": {},
    }
    if mc_probs is not None:
        result["keras_mc_miou"] = scores(mc_maps)["miou"]
    for name, (artifact, fmt) in artifacts.items():
        runner = _runner(fmt.runtime, (folder / artifact["file"]).read_bytes(), threads, layout)
        runner(images[0])  # warm-up: first invoke allocates and packs weights
        outs = [runner.timed(image) for image in progress(images, f"parity {artifact['file']}")]
        maps = np.stack([np.argmax(o, -1) for o, _ in outs])
        found = scores(maps)
        m = found["miou"]
        reference = "keras_mc" if fmt.monte_carlo else "keras"
        entry = {
            "reference": reference,
            "pixel_agreement": float(np.mean(maps == (mc_maps if fmt.monte_carlo else keras_maps))),
            "miou": m,
            "miou_delta_points": 100 * (m - result[f"{reference}_miou"]),
            "latency_ms_median": 1000 * float(np.median([t for _, t in outs])),
            "threads": threads,
            "scores": found,
        }
        if fmt.monte_carlo:
            entry["max_abs_diff"] = float(np.abs(np.stack([o for o, _ in outs]) - mc_probs).max())
        if fmt.runtime == "onnx":
            entry.update(_float16_parity(folder / artifact["file"], images, maps, threads, layout))
        artifact["parity"] = entry
        result["models"][name] = entry
        log(
            f"parity {artifact['file']}: {100 * entry['pixel_agreement']:.2f}% pixels agree, "
            f"mIoU {100 * m:.2f} ({reference} {100 * result[f'{reference}_miou']:.2f})"
        )
    return result


def _runner(runtime: str, content: bytes, threads: int, layout: str = "nhwc"):
    """What runs an artifact on this machine: LiteRT, or ONNX Runtime on the CPU."""
    if runtime == "onnx":
        from segnet_tf.export.onnx import OnnxModel

        return OnnxModel(content, num_threads=threads, layout=layout)
    return TFLiteModel(content, num_threads=threads)


def _float16_parity(
    path: Path, images: np.ndarray, float_maps: np.ndarray, threads: int, layout: str = "nhwc"
) -> dict:
    """Class maps of the graph computed in float16 (as TensorRT --fp16 stores tensors) against
    the float32 ones: no TensorRT here, so this is the evidence that the model survives FP16."""
    import onnx

    from segnet_tf.export.onnx import OnnxModel, float16_copy, runtime_name

    half = OnnxModel(
        float16_copy(onnx.load(path)).SerializeToString(), num_threads=threads, layout=layout
    )
    outs = np.stack([half(image) for image in images])
    return {
        "runtime": runtime_name(),
        "float16_pixel_agreement": float(np.mean(np.argmax(outs, -1) == float_maps)),
        "float16_finite": bool(np.isfinite(outs).all()),
    }
