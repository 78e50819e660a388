"""The benchmark script end to end at a tiny size, and the parts it is built from (none timed)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from benchmarks import run as bench
from benchmarks.floor import NearestUnpool2D, PlainMaxPool2D, floor_model
from benchmarks.flops import conv_flops, forward_flops
from benchmarks.memory import peak_rss
from benchmarks.profiling import (
    STAGE_PARTS,
    delegation,
    pooling_shapes,
    stage_graph,
    stage_table,
)
from benchmarks.report import stages_md
from benchmarks.timing import interleaved, summarize
from segnet_tf.export.lowering import (
    lower_model,
)
from segnet_tf.layers import (
    FLOAT_STEP_GAIN,
    POOLED_LOWERINGS,
    MaxPoolingWithArgmax2D,
    MaxUnpooling2D,
)
from segnet_tf.models import build_model

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_script_smoke_run_writes_every_table(tmp_path):
    out = tmp_path / "result.json"
    cmd = [
        sys.executable, "-m", "benchmarks.run", "--models", "segnet-lite",
        "--size", "64x96", "--reps", "2", "--train-reps", "2", "--precisions", "float32,int8",
        "--sections", "inference,training,edge,serve,scaling,gpu", "--scaling-sizes", "64x96",
        "--edge-frames", "3", "--edge-views", "overlay", "--serve-rounds", "1",
        "--calib-images", "2", "--no-rss",
        "--no-torch",
        "--json", str(out), "--markdown", str(tmp_path / "result.md"),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["environment"]["threads"] == os.cpu_count()

    (table,) = result["inference"]
    assert table["size"] == [64, 96]
    rows = {r["name"]: r for r in table["rows"]}
    keras_row = rows["Keras call (tf.function)"]
    assert keras_row["error"] is None and keras_row["n"] == 2
    assert keras_row["speedup_vs_keras"] == pytest.approx(1.0)
    # the float export is the same network: same class on (almost) every pixel
    assert rows["TFLite float32"]["argmax_agreement"] > 0.99
    assert rows["TFLite int8"]["size_bytes"] < rows["TFLite float32"]["size_bytes"] / 3
    assert "Select TensorFlow op" in rows["TFLite Flex (SELECT_TF_OPS)"]["error"]
    onnx = rows["ONNX Runtime (tf2onnx)"]
    if importlib.util.find_spec("tf2onnx") is None:
        assert onnx["error"].startswith("not installed")
    else:
        assert onnx["error"] is None and onnx["argmax_agreement"] > 0.99
    ours = rows["ONNX Runtime (model.onnx)"]  # the lowered network, as TensorRT takes it
    assert ours["error"] is None and ours["argmax_agreement"] > 0.99
    assert set(table["lowering_overhead"]) == {"float32", "int8"}
    # 2 x 3x3 convs per block, a conv at 64x96 with 16->16 channels alone is 2*64*96*16*9*16 FLOPs
    assert table["forward_gflop"] > 2 * 64 * 96 * 16 * 9 * 16 / 1e9

    (train,) = result["training"]
    trows = {r["name"]: r for r in train["rows"]}
    assert trows["scatter_nd (reference)"]["images_per_s"] > 0
    assert "without XLA" in trows["scatter_nd + jit_compile=True"]["error"]
    assert trows["mask lowering + jit_compile=True (XLA)"]["error"] is None
    (grad,) = result["gradient_check"]
    assert grad["lowered"]["loss_abs_diff"] == 0.0
    assert grad["lowered"]["identical_gradients"] == grad["lowered"]["gradients"]

    (edge,) = result["edge"]
    assert [r["precision"] for r in edge["rows"]] == ["float32", "int8", "onnx"]
    assert all(r["fps_median"] > 0 and r["frames"] == 3 for r in edge["rows"])
    assert all(0 <= r["outside_inference"] < 1 and r["view"] == "overlay" for r in edge["rows"])
    serve = result["serve"]
    assert [r["viewers"] for r in serve["rows"]] == [None, 0, 3]
    assert all(r["fps_median"] > 0 and r["frames"] == 3 for r in serve["rows"])
    assert all(r["cpu_s_median"] > 0 for r in serve["rows"])
    assert serve["rows"][1]["viewer_frames_median"] is None
    assert 1 <= serve["rows"][2]["viewer_frames_median"] <= 3  # the newest frames, no more
    assert {r["precision"] for r in result["scaling"]["rows"]} == {"float32", "int8"}
    if not tf.config.list_physical_devices("GPU"):
        assert result["gpu"] == {"gpu": None, "note": "no GPU present: section skipped"}

    text = (tmp_path / "result.md").read_text()
    assert "| TFLite float32 |" in text and "### Targets (segnet-lite)" in text
    assert "### Web view: edge_demo/camera.py --serve" in text and "3 viewers vs 0: FPS" in text
    assert text.strip() in proc.stdout


def test_bad_options_fail_with_a_message(capsys):
    assert bench.main(["--models", "segnet-huge", "--sections", "inference"]) == 2
    assert "unknown model(s) ['segnet-huge']" in capsys.readouterr().err
    # the smallest size is the model's: 5 poolings need 32x32, SegNet-Basic's 4 only 16x16
    assert bench.main(["--size", "16x16", "--sections", "inference"]) == 2
    error = capsys.readouterr().err
    assert "--size 16x16: segnet-lite: input height 16 is too small for 5 poolings" in error
    assert "use at least 32" in error
    bench.check_args(
        bench.build_parser().parse_args(
            ["--models", "segnet-basic", "--size", "16x16", "--gpu-model", "segnet-basic"]
        )
    )
    with pytest.raises(SystemExit):
        bench.main(["--size", "16"])
    assert "'16': expected HEIGHTxWIDTH with positive integers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--sections", "inference,speed"])


def test_interleaved_runs_round_robin_and_honours_the_budget():
    calls = []
    candidates = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    stats = interleaved(candidates, rounds=3, warmup=1)
    assert calls == ["a", "b"] + ["a", "b"] * 3
    assert stats["a"].n == stats["b"].n == 3
    calls.clear()
    stats = interleaved(candidates, rounds=10, warmup=0, budget_s=0.0, log=lambda _: None)
    assert calls == ["a", "b"] * 2 and stats["a"].n == 2  # stops after min_rounds


def test_summarize_median_and_p95():
    s = summarize([0.001 * v for v in range(1, 101)])  # 1..100 ms
    assert s.median_ms == pytest.approx(50.5)
    assert s.p95_ms == pytest.approx(95.05)
    assert (s.min_ms, s.n) == (pytest.approx(1.0), 100)


def test_flops_counts_multiply_adds_twice():
    inputs = keras.Input((10, 12, 3))
    outputs = keras.layers.Conv2D(8, 3, padding="same", use_bias=True)(inputs)
    model = keras.Model(inputs, outputs)
    assert conv_flops(model.layers[1]) == 2 * 10 * 12 * 8 * 3 * 3 * 3 + 10 * 12 * 8
    assert forward_flops(model) == conv_flops(model.layers[1])


def test_floor_is_max_pool_then_nearest_upsampling():
    x = np.arange(30, dtype=np.float32).reshape(1, 5, 6, 1)  # odd height: SAME pooling 5 -> 3
    pooled, _ = PlainMaxPool2D()(x)
    up = NearestUnpool2D()([pooled, None, x]).numpy()[0, :, :, 0]
    np.testing.assert_array_equal(up[:2, :2], [[7, 7], [7, 7]])  # max of [[0,1],[6,7]]
    np.testing.assert_array_equal(up[4], [25, 25, 27, 27, 29, 29])  # the window of one row
    resize = NearestUnpool2D("edgetpu")([pooled, None, x]).numpy()[0, :, :, 0]
    np.testing.assert_array_equal(resize, up)


def test_floor_model_shares_weights_and_drops_the_switches():
    model = build_model("segnet-lite", (32, 48, 3), 5)
    floor = floor_model(model, batch_size=1)
    assert not any(isinstance(la, (MaxPoolingWithArgmax2D, MaxUnpooling2D)) for la in floor.layers)
    assert floor.output.shape == (1, 32, 48, 5)
    for a, b in zip(model.get_weights(), floor.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("lowering", POOLED_LOWERINGS)
def test_float_step_with_a_huge_gain_is_the_argmax_network(lowering):
    """The profile's float32 candidates: steps saturating on any normal float difference."""
    model = build_model("segnet-lite", (45, 61, 3), 6)
    image = np.random.default_rng(0).uniform(0, 255, (1, 45, 61, 3)).astype(np.float32)
    lowered = lower_model(model, lowering, batch_size=1, gain=FLOAT_STEP_GAIN)
    np.testing.assert_array_equal(lowered(image).numpy(), model(image).numpy())


@pytest.mark.slow
def test_delegation_finds_the_ops_xnnpack_leaves_out(tmp_path):
    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 4], tf.float32)])
    def graph(x):
        pooled = tf.nn.max_pool2d(x, 2, 2, "SAME")
        window_max = tf.image.resize(pooled, (8, 8), method="nearest")
        kept = tf.where(tf.equal(x, window_max), x, tf.zeros_like(x))
        return tf.nn.relu(kept * 2.0)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([graph.get_concrete_function()])
    path = tmp_path / "probe.tflite"
    path.write_bytes(converter.convert())
    info = delegation(path, threads=1)
    assert info["nodes"] == 5 and info["partitions"] == 2  # MAX_POOL_2D | ... | MUL (+ RELU)
    assert info["outside_xnnpack"] == {"RESIZE_NEAREST_NEIGHBOR": 1, "EQUAL": 1, "SELECT_V2": 1}


@pytest.mark.slow
def test_peak_rss_of_a_tflite_process(tmp_path):
    inputs = keras.Input((16, 16, 3), batch_size=1)
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs))
    path = tmp_path / "conv.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    image = tmp_path / "image.npy"
    np.save(image, np.zeros((16, 16, 3), np.float32))
    mem = peak_rss("tflite", path, image, threads=1, calls=1)
    assert 0 < mem["runtime_rss_mb"] <= mem["peak_rss_mb"] < 1000, mem
    assert "rss_error" in peak_rss("tflite", tmp_path / "missing.tflite", image, threads=1)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch (optional) absent")
def test_torch_twin_has_the_keras_convolutions():
    import torch

    from benchmarks.torch_segnet import TorchSegNet, torch_config

    keras_model = build_model("segnet-lite", (45, 61, 3))
    net = TorchSegNet(**torch_config("segnet-lite")).eval()
    conv_params = sum(m.weight.numel() for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    keras_conv = sum(
        int(np.prod(la.kernel.shape)) for la in keras_model.layers if hasattr(la, "kernel")
    )
    assert conv_params == keras_conv
    with torch.inference_mode():
        out = net(torch.zeros(1, 3, 45, 61))  # odd sizes: 45 -> 23 -> ... -> 45
    assert tuple(out.shape) == (1, 11, 45, 61)


@pytest.mark.slow
def test_gpu_code_path_runs_on_the_cpu():
    from benchmarks.gpu import gpu_table

    # The path is the same for every preset; SegNet-Basic (8 convolutions to segnet-lite's 26)
    # traces and compiles the table's 8 models (inference and 3 training variants, 2 policies)
    # in half the time.
    name, size = "segnet-basic", (32, 48)
    t = gpu_table(name, size, batch=1, rounds=1, device="/CPU:0", log=lambda _: None)
    rows = {r["name"]: r for r in t["rows"]}
    for policy in ("float32", "mixed_float16"):
        assert rows[f"Keras inference, {policy}"]["achieved_tflops"] > 0
        assert rows[f"Keras train step, scatter_nd, {policy}"]["images_per_s"] > 0
    assert t["caffe_paper"]["forward_ms"] == 422.5
    assert t["forward_gflop"] == pytest.approx(forward_flops(build_model(name, (*size, 3))) / 1e9)


@pytest.mark.parametrize("part", ["step-conv", "products"])
def test_stage_graphs_of_a_whole_lowering_unpool_at_the_argmax(part):
    """The per-stage profile times real lowerings: its full graphs equal index unpooling."""
    rng = np.random.default_rng(3)
    x = np.maximum(rng.integers(-2, 3, (1, 9, 13, 4)), 0).astype(np.float32)  # ties, odd sizes
    gain = 1.0  # integer maps: differences of at least 1 saturate a gain of 1
    got = stage_graph(part, x.shape[1:], gain).stage(x).numpy()
    pooled, indices = MaxPoolingWithArgmax2D()(x)
    np.testing.assert_array_equal(got, MaxUnpooling2D()([pooled, indices, x]).numpy())
    floor = stage_graph("floor", x.shape[1:], gain).stage(x).numpy()
    np.testing.assert_array_equal(floor[:, ::2, ::2], pooled.numpy())  # nearest upsampling


@pytest.mark.slow
def test_stage_table_times_every_graph_of_every_stage(tmp_path):
    model = build_model("segnet-basic", (32, 48, 3), 4)
    assert pooling_shapes(model) == [(32, 48, 64), (16, 24, 64), (8, 12, 64), (4, 6, 64)]
    rows = stage_table([(8, 12, 4)], tmp_path, threads=1, rounds=2)
    assert {(r["part"], r["precision"]) for r in rows} == {
        (part, precision) for part, _ in STAGE_PARTS for precision in ("float32", "int8")
    }
    for r in rows:
        assert r["n"] == 2 and r["median_ms"] > 0
        if r["part"] == "floor":
            assert r["over_floor_ms"] == 0.0
    text = stages_md({"stages": rows})
    assert text.count("| all stages |") == len(STAGE_PARTS)
