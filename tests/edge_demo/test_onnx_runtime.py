"""The demo on ONNX Runtime: provider order, model choice in a folder, and a run on model.onnx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
import pytest

from edge_demo import DemoError, camera, onnx_backend
from edge_demo.contract import SegModel
from edge_demo.onnx_backend import CPU, CUDA, TENSORRT, choose_providers
from edge_demo.render import colour_lut
from edge_demo.runtime import resolve_model_path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = Path("/models/trt_engines")
TRT_OPTIONS = {
    "trt_fp16_enable": True,
    "trt_engine_cache_enable": True,
    "trt_engine_cache_path": str(CACHE),
}


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        # JetPack's onnxruntime-gpu: all three, TensorRT in FP16 with its engine cache
        ([TENSORRT, CUDA, CPU], [(TENSORRT, TRT_OPTIONS), CUDA, CPU]),
        # the order is ours, not the build's; providers we do not use are left out
        (["AzureExecutionProvider", CPU, CUDA], [CUDA, CPU]),
        (["AzureExecutionProvider", CPU], [CPU]),
        ([TENSORRT, CPU], [(TENSORRT, TRT_OPTIONS), CPU]),
    ],
)
def test_providers_in_order_tensorrt_cuda_cpu(available, expected):
    assert choose_providers(available, CACHE) == expected


def test_provider_option_starts_the_order_lower_or_fails_clearly():
    assert choose_providers([TENSORRT, CUDA, CPU], CACHE, "cuda") == [CUDA, CPU]
    assert choose_providers([TENSORRT, CUDA, CPU], CACHE, "cpu") == [CPU]
    with pytest.raises(DemoError, match=r"--provider tensorrt: .* no TensorrtExecutionProvider"):
        choose_providers([CUDA, CPU], CACHE, "tensorrt")


@pytest.fixture
def model_folder(tmp_path) -> Path:
    for name in ("model.onnx", "model_int8.tflite", "model.tflite", "model_edgetpu.tflite"):
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def fake_providers(monkeypatch, providers: list[str]) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(providers))


@pytest.mark.parametrize(
    ("providers", "picked"),
    [
        ([TENSORRT, CUDA, CPU], "model.onnx"),
        ([CUDA, CPU], "model.onnx"),
        (["AzureExecutionProvider", CPU], "model_int8.tflite"),  # pip's CPU wheel
    ],
)
def test_a_folder_gives_the_onnx_model_when_a_gpu_provider_is_there(
    model_folder, monkeypatch, providers, picked
):
    fake_providers(monkeypatch, providers)
    assert resolve_model_path(model_folder).name == picked
    # the Edge TPU and TFLite delegates keep their own files
    assert resolve_model_path(model_folder, edgetpu=True).name == "model_edgetpu.tflite"
    assert resolve_model_path(model_folder, delegate="libnpu.so").name == "model_int8.tflite"


def test_a_folder_without_onnx_runtime_gives_the_tflite_model(model_folder, monkeypatch):
    def missing():
        raise DemoError("no onnxruntime")

    monkeypatch.setattr(onnx_backend, "onnxruntime", missing)
    assert resolve_model_path(model_folder).name == "model_int8.tflite"


class FakeSession:
    """Stands in for onnxruntime.InferenceSession: records what the demo asked for."""

    created: list = []

    def __init__(self, path, options, providers):
        self.providers = providers
        FakeSession.created.append(self)

    def get_inputs(self):
        return [
            type("Arg", (), {"name": "image", "shape": [1, 48, 64, 3], "type": "tensor(float)"})
        ]

    def get_outputs(self):
        return [
            type("Arg", (), {"name": "scores", "shape": [1, 48, 64, 11], "type": "tensor(float)"})
        ]

    def get_providers(self):  # as ONNX Runtime reports the ones it registered, in order
        return [p if isinstance(p, str) else p[0] for p in self.providers]


def test_a_jetson_build_gets_tensorrt_fp16_with_an_engine_cache(tmp_path, monkeypatch, caplog):
    from edge_demo.onnx_backend import load_onnx_model

    labels = {
        "class_names": [f"c{i}" for i in range(11)],
        "colours": [[i, i, i] for i in range(11)],
    }
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    (tmp_path / "model.onnx").write_bytes(b"")
    fake_providers(monkeypatch, [TENSORRT, CUDA, CPU])
    monkeypatch.setattr(onnxruntime, "InferenceSession", FakeSession)
    with caplog.at_level("INFO"):
        model = load_onnx_model(tmp_path / "model.onnx", tmp_path / "labels.json")
    cache = tmp_path / "trt_engines"
    options = {**TRT_OPTIONS, "trt_engine_cache_path": str(cache)}
    assert FakeSession.created[-1].providers == [(TENSORRT, options), CUDA, CPU]
    assert cache.is_dir() and "caches it in" in caplog.text
    assert (model.device, model.precision, model.input_size) == ("TensorRT FP16", "fp16", (48, 64))
    assert isinstance(model, SegModel)  # what camera_loop takes


# ------------------------------------------------------------------ a real model.onnx, end to end


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory, input_size) -> Path:
    """``model.onnx`` + ``labels.json`` from an untrained segnet-lite, converted by the exporter's
    ONNX path (the demo needs the contract, not accuracy)."""
    import keras

    import segnet_tf
    from segnet_tf.data import CAMVID
    from segnet_tf.export.lowering import lower_model
    from segnet_tf.export.onnx import build

    folder = tmp_path_factory.mktemp("onnx_model")
    keras.utils.set_random_seed(0)
    model = segnet_tf.build_model("segnet-lite", (*input_size, 3), 11, width=0.125)
    build(lower_model(model, "exact"), folder / "model.onnx")
    labels = {
        "input_size": list(input_size),
        "num_classes": 11,
        "class_names": list(CAMVID.class_names),
        "colours": [list(c) for c in CAMVID.colours],
    }
    (folder / "labels.json").write_text(json.dumps(labels))
    return folder / "model.onnx"


def run_demo(*argv) -> dict:
    return camera.run(camera.build_parser().parse_args([str(a) for a in argv]))


@pytest.mark.slow
def test_mask_view_of_an_onnx_model_is_its_argmax(onnx_model, image_dir, clip_frames, tmp_path):
    out = tmp_path / "frames"
    summary = run_demo(
        "--model", onnx_model, "--source", image_dir, "--headless", "--output", f"{out}/",
        "--image-format", "png", "--view", "mask", "--legend", "none",
    )  # fmt: skip
    assert summary["frames"] == 5
    assert summary["runtime"] == f"onnxruntime {onnxruntime.__version__}"
    assert summary["device"] == "CPU" and summary["precision"] == "float32"
    assert 0.0 <= summary["outside_inference"] < 1.0
    # independently: ONNX Runtime on the resized RGB frame, np.argmax, colours, nearest scaling
    session = onnxruntime.InferenceSession(str(onnx_model), providers=[CPU])
    lut = colour_lut(json.loads((onnx_model.parent / "labels.json").read_text())["colours"])
    (h, w), (fh, fw) = session.get_inputs()[0].shape[1:3], clip_frames[0].shape[:2]
    for path, frame in zip(sorted(out.iterdir()), clip_frames, strict=False):
        rgb = cv2.cvtColor(
            cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB
        )
        scores = session.run(None, {"image": rgb[None].astype(np.float32)})[0][0]
        want = cv2.resize(lut[scores.argmax(-1)], (fw, fh), interpolation=cv2.INTER_NEAREST)
        got = cv2.imread(str(path))
        np.testing.assert_array_equal(got[84:, 80:], want[84:, 80:])  # away from the HUD


NO_TF_SCRIPT = """
import sys
from edge_demo import camera
rc = camera.main(sys.argv[1:])
heavy = {"tensorflow", "keras", "segnet_tf", "ai_edge_litert", "tflite_runtime"}
print("heavy modules:", sorted({m.split(".")[0] for m in sys.modules} & heavy))
sys.exit(rc)
"""


@pytest.mark.slow
def test_onnx_demo_needs_neither_tensorflow_nor_a_tflite_runtime(onnx_model, clip):
    args = ["--model", onnx_model, "--source", clip, "--headless", "--max-frames", "2"]
    result = subprocess.run(
        [sys.executable, "-c", NO_TF_SCRIPT, *map(str, args)],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "heavy modules: []" in result.stdout
    assert "2 frames in" in result.stdout and "outside inference" in result.stdout
    assert "on onnxruntime" in result.stderr and "CPU" in result.stderr


@pytest.mark.slow
def test_onnx_model_errors_are_one_line(onnx_model, clip, tmp_path, capsys, monkeypatch):
    (tmp_path / "bad.onnx").write_bytes(b"not a protobuf")
    (tmp_path / "labels.json").write_text((onnx_model.parent / "labels.json").read_text())
    argv = ["--source", str(clip), "--headless"]
    assert camera.main(["--model", str(tmp_path / "bad.onnx"), *argv]) == 1
    assert "ONNX Runtime cannot load it" in capsys.readouterr().err
    assert camera.main(["--model", str(onnx_model), "--edgetpu", *argv]) == 1
    assert "--edgetpu and --delegate are for .tflite models" in capsys.readouterr().err
    fake_providers(monkeypatch, [CPU])
    assert camera.main(["--model", str(onnx_model), "--provider", "cuda", *argv]) == 1
    err = capsys.readouterr().err
    assert "--provider cuda: this ONNX Runtime has no CUDAExecutionProvider" in err
    assert "Traceback" not in err
