"""Model files are data: every verb refuses a file whose loading would run code, and nothing in it
runs (each payload writes a marker file when its code runs: the marker must never appear); files
that are not segnet-tf models are one-line errors."""

from __future__ import annotations

import json
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest
from click.testing import CliRunner

import segnet_tf
from segnet_tf.cli import cli
from segnet_tf.config import TrainConfig
from segnet_tf.data import CAMVID, write_synthetic_dataset
from segnet_tf.models import ModelFileError, load_model, unsafe_loading
from segnet_tf.models.loading import unsafe_reason
from segnet_tf.training import train

REPO = Path(__file__).resolve().parents[2]
SIZE = (16, 16)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A real segnet-tf model, and model files that must not load, in one folder."""
    root = tmp_path_factory.mktemp("model_files")
    keras.utils.set_random_seed(0)
    good = root / "good.keras"
    segnet_tf.build_model("segnet-basic", (*SIZE, 3), 11, width=0.125).save(good)

    marker = root / "lambda-ran"
    payload = eval(f"lambda x: (open({str(marker)!r}, 'w').write('ran'), x)[1]")  # noqa: S307
    image = keras.Input((*SIZE, 3))
    scores = keras.layers.Conv2D(11, 1)(keras.layers.Lambda(payload, name="payload")(image))
    keras.Model(image, scores).save(root / "lambda.keras")
    marker.unlink()  # building the model ran the lambda once, here, on purpose

    data = good.read_bytes()
    (root / "truncated.keras").write_bytes(data[: len(data) // 2])
    classifier = keras.Sequential([keras.Input((*SIZE, 3)), keras.layers.Flatten()])
    classifier.add(keras.layers.Dense(10))
    classifier.save(root / "classifier.keras")
    (root / "legacy.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    return {"root": root, "good": good, "marker": marker, "lambda": root / "lambda.keras"}


def edited(src: Path, dst: Path, edit) -> Path:
    """A copy of the ``.keras`` archive ``src`` whose ``config.json`` went through ``edit``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                edit(config)
                data = json.dumps(config).encode()
            zout.writestr(item, data)
    return dst


def first_conv(config: dict) -> dict:
    return next(lay for lay in config["config"]["layers"] if lay["class_name"] == "Conv2D")


def test_our_models_load_safely(files):
    shipped = load_model(REPO / "models" / "segnet-lite-camvid")
    assert shipped.output_shape == (None, 360, 480, 11)
    assert load_model(files["good"]).output_shape == (None, *SIZE, 11)


def test_a_lambda_layer_is_refused_and_never_runs(files):
    with pytest.raises(ModelFileError) as refused:
        load_model(files["lambda"])
    message = str(refused.value)
    assert "lambda.keras" in message and "Lambda layer 'payload'" in message
    assert "\n" not in message and "nothing in it was run" in message
    assert not files["marker"].exists()
    # The payload is real: opted in, loading it runs it.
    with unsafe_loading():
        load_model(files["lambda"])
    assert files["marker"].read_text() == "ran"
    files["marker"].unlink()


def test_a_config_naming_any_importable_function_is_refused_before_import(
    files, tmp_path, monkeypatch
):
    marker = tmp_path / "module-ran"
    (tmp_path / "payload_module.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\ndef run(x):\n    return x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    gadgets = {
        "payload_module.run": {"module": "payload_module", "config": "run"},
        "keras.config.enable_unsafe_deserialization": {  # CVE-2025-8747's gadget
            "module": "keras.config",
            "config": "enable_unsafe_deserialization",
        },
    }
    for name, fields in gadgets.items():

        def plant(config, fields=fields):
            function = {"class_name": "function", "registered_name": fields["config"]}
            first_conv(config)["config"]["activation"] = {**function, **fields}

        path = edited(files["good"], tmp_path / f"{name}.keras", plant)
        with pytest.raises(ModelFileError, match=f"names the function {name}"):
            load_model(path)
    assert not marker.exists() and "payload_module" not in sys.modules

    def foreign(config):
        first_conv(config)["registered_name"] = "someone>Conv2D"

    path = edited(files["good"], tmp_path / "foreign.keras", foreign)
    with pytest.raises(ModelFileError, match="names 'someone>Conv2D'"):
        load_model(path)


def test_unsafe_reason_allows_keras_and_our_registered_objects_only():
    assert unsafe_reason({"class_name": "Conv2D", "module": "keras.layers"}) is None
    ours = {"module": "segnet_tf.layers", "registered_name": "segnet_tf>MaxUnpooling2D"}
    assert unsafe_reason({"class_name": "MaxUnpooling2D", **ours}) is None
    assert "names os.system" in unsafe_reason({"class_name": "system", "module": "os"})
    function = {"class_name": "function", "module": "os", "config": "system"}
    assert "names the function os.system" in unsafe_reason(function)
    assert "bytecode" in unsafe_reason({"class_name": "__lambda__", "config": {}})
    # Keras looks "package>Name" up in its registry of every imported library before any module
    assert "'other>Layer', which is registered" in unsafe_reason({"class_name": "other>Layer"})
    relu = {"class_name": "function", "module": "keras.activations", "config": "relu"}
    assert unsafe_reason({**relu, "registered_name": "relu"}) is None
    assert "'other>fn'" in unsafe_reason({**relu, "config": "other>fn"})
    assert "vocabulary file" in unsafe_reason({"class_name": "StringLookup", "config": {}})


@pytest.mark.parametrize(
    "name, message",
    [
        ("truncated.keras", "truncated or corrupt zip"),
        ("classifier.keras", "output shape (None, 10) is not per-pixel class scores"),
        ("legacy.h5", "legacy HDF5 model"),
    ],
)
def test_files_that_are_not_segnet_models_are_one_line_errors(files, name, message):
    with pytest.raises(ModelFileError) as refused:
        load_model(files["root"] / name)
    assert message in str(refused.value) and name in str(refused.value)
    assert "\n" not in str(refused.value)


def run(*args) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_error(result, *expected: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for text in expected:
        assert text in errors[0], errors[0]


def test_every_verb_refuses_a_code_carrying_model_and_runs_none_of_it(files, tmp_path):
    payload, marker = files["lambda"], files["marker"]
    data = write_synthetic_dataset(tmp_path / "data", train=2, val=2, size=SIZE)
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.zeros((*SIZE, 3), np.uint8))
    refused = ("lambda.keras", "Lambda layer")

    assert_one_line_error(
        run("predict", "--model", payload, image, "--out", tmp_path / "p"), *refused
    )
    assert_one_line_error(run("evaluate", "--model", payload, "--data", data), *refused)
    assert_one_line_error(run("export", "--model", payload, "--out", tmp_path / "e"), *refused)
    init = ("train", "--data", data, "--init-weights", payload, "--model", "segnet-basic")
    init += ("--width", "0.125", "--input-size", "16x16")
    assert_one_line_error(run(*init, "--epochs", "1", "--out", tmp_path / "t"), *refused)

    # --resume loads the run's last.keras: plant the payload there.
    resumed = tmp_path / "run"
    resumed.mkdir()
    options = TrainConfig(out=str(resumed), model="segnet-basic", width=0.125, input_size=SIZE)
    options = replace(options, synthetic_train=4, synthetic_val=4, epochs=2)
    info = {"train": options.to_dict(), "dataset": CAMVID.to_dict()}
    (resumed / "config.json").write_text(json.dumps(info))
    (resumed / "state.json").write_text(json.dumps({"epoch": 1, "best_miou": None}))
    (resumed / "last.keras").write_bytes(payload.read_bytes())
    assert_one_line_error(run("train", "--resume", "--out", resumed), "last.keras", "Lambda layer")
    with pytest.raises(ModelFileError, match="Lambda layer"):
        train(TrainConfig(out=str(resumed), resume=True), verbose=0)

    assert not marker.exists()


def test_unsafe_load_is_an_explicit_opt_in_with_a_warning(files, tmp_path):
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.zeros((*SIZE, 3), np.uint8))
    result = run("--unsafe-load", "predict", "--model", files["lambda"], image, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "warning: --unsafe-load" in result.stderr
    assert files["marker"].exists()  # the user asked for it
    files["marker"].unlink()


def test_other_files_given_as_models_are_one_line_errors(files, tmp_path):
    tflite = REPO / "models" / "segnet-lite-camvid" / "model_int8.tflite"
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.zeros((*SIZE, 3), np.uint8))
    result = run("export", "--model", tflite, "--out", tmp_path / "e")
    assert_one_line_error(result, "model_int8.tflite", "not a .keras file")
    result = run("evaluate", "--model", files["root"] / "truncated.keras")
    assert_one_line_error(result, "truncated.keras", "truncated or corrupt")
    result = run("predict", "--model", files["root"] / "classifier.keras", image, "--out", tmp_path)
    assert_one_line_error(result, "classifier.keras", "not a segmentation model")

    # A model whose run config (our labels) names other classes than it predicts.
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "best.keras").write_bytes(files["good"].read_bytes())
    three = {**CAMVID.to_dict(), "name": "three", "class_names": ["a", "b", "c"]}
    three.update(colours=[[0, 0, 0]] * 3, class_weights=None)
    info = {"train": TrainConfig(out=str(folder)).to_dict(), "dataset": three}
    (folder / "config.json").write_text(json.dumps(info))
    result = run("predict", "--model", folder, image, "--out", tmp_path / "p")
    assert_one_line_error(result, "predicts 11 classes but its config.json names 3")
