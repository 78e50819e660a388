"""One timed inference call per artifact kind, importing only that kind's runtime.

The same code serves the in-process timing and the fresh-process peak-memory pass
(:mod:`benchmarks.memory`), where a TFLite or ONNX Runtime process must not import TensorFlow:
that is the process a board runs, and TensorFlow alone holds hundreds of MB.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

Runner = Callable[[], np.ndarray]

# The modules a process of each kind imports before it loads a model (the baseline of its memory).
RUNTIMES = {
    "keras": ("tensorflow", "segnet_tf"),
    "savedmodel": ("tensorflow",),
    "onnx": ("onnxruntime",),
    "tflite": ("ai_edge_litert.interpreter",),
    "torch": ("torch", "benchmarks.torch_segnet"),
}


def import_runtime(kind: str) -> None:
    if kind not in RUNTIMES:
        raise ValueError(f"unknown runner kind {kind!r}; choose one of {', '.join(RUNTIMES)}")
    for module in RUNTIMES[kind]:
        importlib.import_module(module)


def set_tf_threads(threads: int) -> None:
    """Both TensorFlow pools at ``threads``; a no-op once TensorFlow has started its runtime."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass


def make_runner(kind: str, path: Path, image: np.ndarray, threads: int) -> Runner:
    """A call that feeds ``image`` (``[H, W, 3]`` RGB 0..255) and returns the model's output array.

    Every call includes feeding the input and copying the output out, as an application would.
    """
    import_runtime(kind)
    return _BUILDERS[kind](Path(path), np.asarray(image, np.float32), threads)


def _keras(path: Path, image: np.ndarray, threads: int) -> Runner:
    import tensorflow as tf

    import segnet_tf

    set_tf_threads(threads)
    model = segnet_tf.load_model(path)
    spec = tf.TensorSpec((1, *image.shape), tf.float32)
    call = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    x = image[None]
    return lambda: call(x).numpy()


def _savedmodel(path: Path, image: np.ndarray, threads: int) -> Runner:
    import tensorflow as tf

    set_tf_threads(threads)
    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures["serving_default"]
    x = image[None]

    def run():
        _ = loaded  # the signature's variables live as long as the loaded object
        return signature(image=tf.constant(x))["scores"].numpy()

    return run


def _onnx(path: Path, image: np.ndarray, threads: int) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: image[None]}
    return lambda: session.run(None, feed)[0]


def _tflite(path: Path, image: np.ndarray, threads: int) -> Runner:
    from ai_edge_litert.interpreter import Interpreter

    from edge_demo.contract import quantise

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    x = image[None]
    if inp["dtype"] != np.float32:
        scale, zero = inp["quantization"]
        x = quantise(x, inp["dtype"], scale, zero)

    def run():
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])

    return run


def _torch(path: Path, image: np.ndarray, threads: int) -> Runner:
    import torch

    from benchmarks import torch_segnet

    torch.set_num_threads(threads)
    model = torch_segnet.load(path).eval()
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[None]))

    def run():
        with torch.inference_mode():
            return model(x).numpy()

    return run


_BUILDERS = {
    "keras": _keras,
    "savedmodel": _savedmodel,
    "onnx": _onnx,
    "tflite": _tflite,
    "torch": _torch,
}
