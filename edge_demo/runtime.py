"""Which model file to run, and on which backend: the demo's picker.

Given a file or a model folder (an unpacked bundle, :mod:`edge_demo.bundle`, is one), it picks
the file for the target (:func:`resolve_model_path`) and hands it to the TFLite backend
(:mod:`edge_demo.tflite_backend`) or, for ``.onnx``, to ONNX Runtime
(:mod:`edge_demo.onnx_backend`). What a model file holds is :mod:`edge_demo.contract`'s.
"""

from __future__ import annotations

from pathlib import Path

from edge_demo import DemoError, DemoFileNotFoundError
from edge_demo.contract import (
    CPU_ORDER,
    EDGETPU_ORDER,
    GPU_DELEGATE_ORDER,
    LABELS_FILE,
    MODEL_FILES,
    SegModel,
)
from edge_demo.onnx_backend import has_gpu_provider, load_onnx_model
from edge_demo.tflite_backend import load_tflite_model

# Run from a checkout, the shipped model; an installed segnet-edge ships none and needs --model.
_CHECKOUT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "segnet-lite-camvid"
DEFAULT_MODEL_DIR = _CHECKOUT_MODEL_DIR if _CHECKOUT_MODEL_DIR.is_dir() else None
EXPORT_HINT = "export one with `segnet-tf export --int8`"
EDGETPU_HINT = (
    "export one with `segnet-tf export --target edgetpu` (compiled there when edgetpu_compiler "
    f"is on PATH; else run `edgetpu_compiler -o DIR DIR/{MODEL_FILES['edgetpu']}` on a machine "
    "that has it, docs/edge_demo.md)"
)


def is_gpu_delegate(delegate: str | None) -> bool:
    """Whether ``--delegate`` is TFLite's GPU delegate (libtensorflowlite_gpu_delegate.so)."""
    return delegate is not None and "gpu" in Path(delegate).name.lower()


def folder_order(edgetpu: bool = False, delegate: str | None = None) -> tuple[str, ...]:
    """The files a model folder is searched for, best first, for the target."""
    if edgetpu:
        return EDGETPU_ORDER
    names = GPU_DELEGATE_ORDER if is_gpu_delegate(delegate) else CPU_ORDER
    if delegate is None and has_gpu_provider():
        names = (MODEL_FILES["onnx"], *names)
    return names


def resolve_model_path(
    model: str | Path | None,
    edgetpu: bool = False,
    delegate: str | None = None,
) -> Path:
    """The model file to load: ``model`` itself, or the best file of a model folder for the
    target (the Edge TPU, a GPU delegate, ONNX Runtime with a
    GPU provider, else the CPU or an NPU delegate)."""
    if model is None and DEFAULT_MODEL_DIR is None:
        raise DemoFileNotFoundError(
            "no model given: pass --model (a .tflite or .onnx file, a model folder, or a "
            "segnet-tf export --bundle .tar.gz)"
        )
    folder = DEFAULT_MODEL_DIR if model is None else Path(model)
    if folder.is_dir():
        names = folder_order(edgetpu, delegate)
        for name in names:
            if (folder / name).is_file():
                return folder / name
        if edgetpu:
            raise DemoFileNotFoundError(
                f"--edgetpu: {folder} has no Edge TPU model ({' or '.join(names)}); "
                f"{EDGETPU_HINT}, or drop --edgetpu to run {CPU_ORDER[0]} on the CPU"
            )
        if model is None:
            raise DemoFileNotFoundError(
                f"no model given and none found in {folder}: pass --model PATH.tflite "
                f"or {EXPORT_HINT}"
            )
        raise DemoFileNotFoundError(f"--model {folder}: folder has none of {', '.join(names)}")
    if model is None:
        raise DemoFileNotFoundError(
            f"no model given and the default {folder / CPU_ORDER[0]} does not exist: pass "
            f"--model PATH.tflite or {EXPORT_HINT}"
        )
    if not folder.is_file():
        raise DemoFileNotFoundError(f"--model {folder}: file not found")
    return folder


def load_model(
    path: str | Path | None = None,
    labels: str | Path | None = None,
    threads: int | None = None,
    edgetpu: bool = False,
    delegate: str | None = None,
    provider: str = "auto",
    engine_cache: str | Path | None = None,
    verbose: bool = False,
) -> SegModel:
    """Load a ``.tflite`` or ``.onnx`` model (a file, a model folder, or the default)
    and its labels (``labels.json`` beside it unless given); ``provider`` and ``engine_cache``
    are for ONNX Runtime."""
    if threads is not None and threads < 1:
        raise DemoError(f"--threads must be >= 1, got {threads}")
    model_path = resolve_model_path(path, edgetpu, delegate)
    labels_path = model_path.parent / LABELS_FILE if labels is None else Path(labels)
    if model_path.suffix.lower() == ".onnx":
        if edgetpu or delegate is not None:
            raise DemoError(
                f"--model {model_path}: an ONNX model runs on ONNX Runtime; --edgetpu and "
                "--delegate are for .tflite models"
            )
        return load_onnx_model(model_path, labels_path, threads, provider, engine_cache, verbose)
    return load_tflite_model(model_path, labels_path, threads, edgetpu, delegate, verbose)
