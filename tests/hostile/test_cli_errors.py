"""Careless input at the command line (issue 28, item 8): paths the system refuses, absurd sizes,
corrupt state and weight files are one line naming the path or option, never a traceback, and
leave no ``--out`` behind."""

from __future__ import annotations

import io
import json
import warnings

import cv2
import keras
import numpy as np
import pytest

from edge_demo import camera
from segnet_tf.data import CAMVID
from segnet_tf.export.calibration import CalibrationError, load_image_array
from segnet_tf.models.encoder_weights import read_vgg16_convs
from segnet_tf.runs import read_state
from segnet_tf.training import TrainConfig

SHIPPED = "models/segnet-lite-camvid"
DEMO_MODEL = "tests/edge_demo/fixtures/model_int8.tflite"


@pytest.fixture()
def a_file(tmp_path):
    path = tmp_path / "taken"
    path.write_text("not a folder")
    return path


def test_an_out_that_is_a_file_is_one_line_naming_it(hostile, dataset, a_file):
    image = hostile.write_image(a_file.parent / "frame.png")
    tiny = ("--model", "segnet-basic", "--width", "0.125", "--input-size", "16x16")
    commands = {
        "predict": ("predict", "--model", SHIPPED, image, "--out", a_file),
        "data split": ("data", "split", "--data", two_drives(dataset), "--by-drive", "--out",
                       a_file),
        "data pack": ("data", "pack", "--data", dataset, "--out", a_file),
        "train": ("train", "--data", dataset, *tiny, "--epochs", "1", "--out", a_file),
    }  # fmt: skip
    for name, args in commands.items():
        line = hostile.assert_refused(hostile.run_cli(*args), str(a_file))
        assert "File exists" in line or "Not a directory" in line, (name, line)
        assert a_file.read_text() == "not a folder"


def test_an_absurd_input_size_is_one_line(hostile, tmp_path):
    """Issue 28: ``--input-size 100000x100000`` printed 77 lines from TensorFlow."""
    result = hostile.run_cli("train", "--input-size", "100000x100000", "--out", tmp_path / "r")
    line = hostile.assert_refused(result, "--input-size 100000x100000", "10000 megapixels")
    assert "above the 40 megapixel limit" in line
    assert not (tmp_path / "r").exists()
    result = hostile.run_cli("models", "--decoders", "--input-size", "100000x100000")
    hostile.assert_refused(result, "--input-size 100000x100000")


def test_a_corrupt_state_json_names_the_file(hostile, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    options = TrainConfig(out=str(run), epochs=1, input_size=(16, 16), synthetic_train=2)
    info = {"train": options.to_dict(), "dataset": CAMVID.to_dict()}
    (run / "config.json").write_text(json.dumps(info))
    (run / "last.keras").write_bytes(b"read after state.json")
    for content, reason in [("", "invalid JSON"), ("[1, 2]", "expected an 'epoch' count")]:
        (run / "state.json").write_text(content)
        with pytest.raises(ValueError, match=f"state.json: not a run state \\({reason}"):
            read_state(run)
    (run / "state.json").write_text("")
    hostile.assert_refused(hostile.run_cli("train", "--resume", "--out", run), "state.json")


def test_a_wrong_shape_weights_file_is_one_line_without_warnings(tmp_path):
    """Issue 28: one right line, then 225 lines of weight dumps."""
    wrong = tmp_path / "wrong.weights.h5"
    other = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="block1_conv1")]
    )
    other.save_weights(wrong)
    with warnings.catch_warnings(record=True) as caught, pytest.raises(ValueError) as refused:
        warnings.simplefilter("always")
        list(read_vgg16_convs(str(wrong), {}))
    message = str(refused.value)
    assert message.startswith(f"--encoder-weights {str(wrong)!r}: could not load VGG16 weights")
    assert "value.shape=(3, 3, 3, 4)" in message and "\n" not in message and len(message) < 600
    assert caught == []


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b"\x93NUMPY garbage"), "not a readable .npy array"),
        (lambda p: p.write_bytes(b""), "not a readable .npy array"),
        (lambda p: np.save(p, np.array([{"a": 1}], dtype=object)), "not a readable .npy array"),
        (lambda p: p.write_bytes(_truncated_npy()), "not a readable .npy array"),
        (lambda p: np.save(p, np.array(["a", "b"])), "expected a numeric .npy array"),
        (lambda p: np.save(p, np.zeros((2, 8, 8, 1))), "array of shape (2, 8, 8, 1), expected"),
    ],
    ids=["garbage", "empty", "pickle", "truncated", "strings", "shape"],
)
def test_bad_calibration_arrays_name_the_file(tmp_path, make, reason):
    path = tmp_path / "calib.npy"
    make(path)
    with pytest.raises(CalibrationError) as refused:
        load_image_array(path, (8, 8))
    assert str(refused.value).startswith(f"--calib-data {str(path)!r}: ")
    assert reason in str(refused.value) and "\n" not in str(refused.value)


def test_export_with_a_bad_calibration_array_is_one_line_and_leaves_nothing(
    hostile, tmp_path, good_model
):
    bad = tmp_path / "calib.npy"
    np.save(bad, np.array([{"payload": 1}], dtype=object))  # a pickle: never unpickled
    result = hostile.run_cli(
        "export", "--model", good_model, "--out", tmp_path / "e", "--int8", "--calib-data", bad
    )
    hostile.assert_refused(result, "calib.npy", "not a readable .npy array")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.npy"]


@pytest.mark.parametrize("option", ["--json", "--output"])
def test_the_demo_refuses_an_unwritable_output_before_it_runs(tmp_path, a_file, capsys, option):
    """Issue 28: the demo's ``--json`` or ``--output`` under an unwritable path was a traceback
    after the whole run."""
    target = a_file / ("summary.json" if option == "--json" else "out.mp4")
    argv = ["--model", DEMO_MODEL, "--source", str(hostile_frames(tmp_path)), "--headless"]
    assert camera.main([*argv, option, str(target)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {option} {target}: cannot create its folder") and "\n" not in err


def two_drives(dataset):
    """The synthetic dataset's frames renamed as two CamVid drives, for ``data split``."""
    lines = []
    for i, line in enumerate((dataset / "train.txt").read_text().split("\n")[:2]):
        image, label = (dataset / p for p in line.split())
        for path in (image, label):
            path.rename(path.with_name(f"000{i}TP_{path.name}"))
        lines.append(f"train/000{i}TP_{image.name} trainannot/000{i}TP_{label.name}")
    (dataset / "train.txt").write_text("\n".join(lines) + "\n")
    return dataset


def hostile_frames(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir(exist_ok=True)
    cv2.imwrite(str(folder / "0.png"), np.zeros((24, 32, 3), np.uint8))
    return folder


def _truncated_npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((100, 8, 8, 3), np.float32))
    return buffer.getvalue()[:1000]
