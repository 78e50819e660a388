"""What the exporter and the board-side demo share without importing each other: the
``labels.json`` format and the input quantisation rule. Each side keeps its own code; these
tests hold the two to one contract."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_demo import contract, runtime
from segnet_tf.data import CAMVID, DatasetConfig
from segnet_tf.export.labels import LABELS_FILE, write_labels
from segnet_tf.export.tflite import TFLiteModel, quantise

FIXTURES = Path(__file__).resolve().parents[1] / "edge_demo" / "fixtures"  # exporter-made
THREE = DatasetConfig(
    name="three",
    class_names=("road", "lane marking", "kerb"),
    colours=((128, 64, 128), (255, 255, 255), (90, 90, 0)),
    void_id=255,
)


@pytest.mark.parametrize("config", [CAMVID, THREE], ids=lambda c: c.name)
def test_labels_written_by_the_library_read_by_the_demo(config, tmp_path):
    path = write_labels(tmp_path, config, "segnet-lite", (45, 61))
    assert path == tmp_path / LABELS_FILE == tmp_path / "labels.json"  # the demo's default name
    labels = contract.load_labels(path)
    assert labels.class_names == config.class_names
    assert labels.colours == config.colours
    assert labels.input_size == (45, 61)
    assert labels.num_classes == config.num_classes
    assert labels.model == "segnet-lite"
    assert json.loads(path.read_text())["void_id"] == config.void_id


TIES = np.arange(-300, 301) + 0.5  # x / scale = k + 0.5 at scale 1


@pytest.mark.parametrize(
    ("dtype", "scale", "zero_point"),
    [(np.int8, 1.0, -128), (np.int8, 0.5, 3), (np.uint8, 2.0, 10), (np.int8, 0.0235, -7)],
)
def test_exporter_and_demo_quantise_alike(dtype, scale, zero_point):
    rng = np.random.default_rng(0)
    for x in (TIES * scale, rng.uniform(-400, 400, 5000) * scale, np.arange(256.0)):
        ours, demos = (
            quantise(x, dtype, scale, zero_point),
            contract.quantise(x, dtype, scale, zero_point),
        )
        assert ours.dtype == demos.dtype == dtype
        np.testing.assert_array_equal(ours, demos)
    # half to even on both sides: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0, -1.5 -> -2
    ties = np.array([0.5, 1.5, 2.5, -0.5, -1.5], np.float32)
    np.testing.assert_array_equal(quantise(ties, np.int8, 1.0, 0), [0, 2, 2, 0, -2])


def test_parity_runner_feeds_the_model_what_the_demo_feeds_it():
    """The exporter's parity report and the camera loop quantise a frame identically, and read
    the same class scores back."""
    path = FIXTURES / "model_int8.tflite"
    ours = TFLiteModel(path.read_bytes())
    demo = runtime.load_model(path)
    frame_bgr = np.random.default_rng(1).integers(0, 256, (*ours.input_size, 3), dtype=np.uint8)
    rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB).astype(np.float32)
    x = demo.preprocess(frame_bgr)
    np.testing.assert_array_equal(ours.quantize_input(rgb), x)
    np.testing.assert_array_equal(ours(rgb), demo.scores(demo.infer(x)))
