"""ONNX Runtime side of the demo: ``model.onnx`` on TensorRT (FP16), CUDA or the CPU.

This is how a Jetson runs the model on its GPU: NVIDIA's JetPack wheels of ``onnxruntime-gpu``
bring the TensorRT and CUDA execution providers (the TFLite GPU delegate ships in no wheel for
Jetson). Providers are tried in the order of :data:`PROVIDER_ORDER`, keeping those the installed
build has; TensorRT computes in FP16 and caches the engines it builds on disk, since building one
takes minutes on a Jetson. The model contract is :mod:`edge_demo.contract`'s: input
``[1, H, W, 3]`` float32 RGB 0..255, output ``[1, H, W, num_classes]`` float32 logits,
``labels.json`` beside it. The NCHW file of ``segnet-tf export --layout jetson-inference`` is
for jetson-inference's ``segnet`` instead.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from edge_demo import DemoError
from edge_demo.contract import Labels, check_labels, load_labels, preprocess
from edge_demo.quiet import native_output_held

log = logging.getLogger(__name__)

TENSORRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
PROVIDER_ORDER = (TENSORRT, CUDA, CPU)
GPU_PROVIDERS = frozenset({TENSORRT, CUDA})
DEVICE_NAMES = {TENSORRT: "TensorRT FP16", CUDA: "CUDA", CPU: "CPU"}  # for the log and summary
# --provider names: start the order there (auto: from the top)
PROVIDER_CHOICES = {"auto": TENSORRT, "tensorrt": TENSORRT, "cuda": CUDA, "cpu": CPU}
INSTALL_HINT = (
    "pip install onnxruntime (CPU), onnxruntime-gpu (CUDA), or on a Jetson NVIDIA's JetPack "
    "wheel of onnxruntime-gpu"
)


@functools.cache
def onnxruntime():
    try:
        import onnxruntime as ort
    except ImportError:
        raise DemoError(f"running a .onnx model needs ONNX Runtime: {INSTALL_HINT}") from None
    return ort


def available_providers() -> list[str]:
    """The execution providers of the installed ONNX Runtime; none when it is not installed."""
    try:
        ort = onnxruntime()
    except DemoError:
        return []
    return list(ort.get_available_providers())


def has_gpu_provider() -> bool:
    return bool(GPU_PROVIDERS & set(available_providers()))


def choose_providers(
    available: list[str], engine_cache: Path, start: str = "auto"
) -> list[str | tuple[str, dict]]:
    """ONNX Runtime's ``providers`` argument: :data:`PROVIDER_ORDER` from ``start`` on, keeping
    the available ones. TensorRT runs in FP16 with its engines cached in ``engine_cache``; the
    CPU provider always comes last, for any node a GPU provider does not take."""
    if start not in PROVIDER_CHOICES:
        raise DemoError(f"--provider {start}: choose one of {', '.join(PROVIDER_CHOICES)}")
    order = PROVIDER_ORDER[PROVIDER_ORDER.index(PROVIDER_CHOICES[start]) :]
    if start != "auto" and order[0] not in available:
        have = ", ".join(p for p in PROVIDER_ORDER if p in available) or "none"
        raise DemoError(
            f"--provider {start}: this ONNX Runtime has no {order[0]} (it has {have}); "
            f"{INSTALL_HINT}"
        )
    chosen: list[str | tuple[str, dict]] = []
    for name in order:
        if name == TENSORRT and name in available:
            options = {
                "trt_fp16_enable": True,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(engine_cache),
            }
            chosen.append((name, options))
        elif name in available or name == CPU:
            chosen.append(name)
    return chosen


def provider_name(provider: str | tuple[str, dict]) -> str:
    return provider if isinstance(provider, str) else provider[0]


class OnnxModel:
    """An ONNX segmentation model on ONNX Runtime (:class:`edge_demo.contract.SegModel`)."""

    def __init__(self, session, path: Path, labels: Labels) -> None:
        self.session = session
        self.path = path
        self.labels = labels
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise DemoError(
                f"{path}: expected 1 input and 1 output, got {len(inputs)} and {len(outputs)}"
            )
        in_shape, out_shape = tuple(inputs[0].shape), tuple(outputs[0].shape)
        if len(in_shape) == 4 and in_shape[1] == 3 and in_shape[3] != 3:
            raise DemoError(
                f"{path}: input {inputs[0].name!r} {list(in_shape)} is NCHW, jetson-inference's "
                "layout (segnet-tf export --layout jetson-inference): run it with segnet "
                "(docs/jetson.md), or export the default layout for this demo"
            )
        if (
            len(in_shape) != 4
            or in_shape[0] != 1
            or in_shape[3] != 3
            or inputs[0].type != ("tensor(float)")
        ):
            raise DemoError(
                f"{path}: input {inputs[0].type} {list(in_shape)} is not float [1, H, W, 3]"
            )
        if len(out_shape) != 4 or out_shape[0] != 1 or not isinstance(out_shape[3], int):
            raise DemoError(f"{path}: output shape {list(out_shape)} is not [1, H, W, num_classes]")
        if not all(isinstance(d, int) for d in in_shape):
            raise DemoError(f"{path}: input shape {list(in_shape)} is not static; export batch 1")
        self.input_size = (int(in_shape[1]), int(in_shape[2]))
        self.num_classes = int(out_shape[3])
        self.input_lut = None
        self._input_name = inputs[0].name
        self._buffer = np.empty((1, *self.input_size, 3), np.float32)
        self.provider = session.get_providers()[0]
        check_labels(labels, self)

    @property
    def precision(self) -> str:
        return "fp16" if self.provider == TENSORRT else "float32"

    @property
    def runtime(self) -> str:
        return f"onnxruntime {onnxruntime().__version__}"

    @property
    def device(self) -> str:
        return DEVICE_NAMES.get(self.provider, self.provider)

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        return preprocess(frame_bgr, self.input_size, None, out=self._buffer)

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Class logits ``[H, W, C]`` float32."""
        return self.session.run(None, {self._input_name: x})[0][0]

    def scores(self, raw: np.ndarray) -> np.ndarray:
        return raw


def engine_cache_dir(model_path: Path, cache: str | Path | None) -> Path:
    """Where TensorRT keeps its engines: ``cache``, else ``trt_engines/`` beside the model."""
    return Path(cache) if cache is not None else model_path.parent / "trt_engines"


def load_onnx_model(
    model_path: Path,
    labels_path: Path,
    threads: int | None = None,
    provider: str = "auto",
    engine_cache: str | Path | None = None,
    verbose: bool = False,
) -> OnnxModel:
    """Load ``model_path`` with the best provider available and its labels; ONNX Runtime's own
    warnings are held back unless ``verbose``."""
    ort = onnxruntime()
    label_set = load_labels(labels_path)
    cache = engine_cache_dir(model_path, engine_cache)
    providers = choose_providers(available_providers(), cache, provider)
    if provider_name(providers[0]) == TENSORRT:
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DemoError(f"--engine-cache {cache}: cannot create it: {e}") from None
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 2 if verbose else 3  # warnings (its default), else errors only
    # The loop does its own work between inferences: idle workers must sleep, not spin on it.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        with native_output_held(verbose):
            session = ort.InferenceSession(str(model_path), options, providers=providers)
    except Exception as e:  # ONNX Runtime raises its own exception types for bad files
        raise DemoError(f"--model {model_path}: ONNX Runtime cannot load it: {e}") from None
    if provider_name(providers[0]) == TENSORRT:
        log.info("TensorRT builds an FP16 engine on first use (minutes) and caches it in %s", cache)
    return OnnxModel(session, model_path, label_set)
