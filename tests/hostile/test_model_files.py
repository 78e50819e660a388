"""Crafted ``.keras`` files (issue 28, items 1 and 2): what a config may name is one allow-list,
checked for every field Keras turns into a callable, and an archive's unpacked size and member
count are capped before Keras opens it."""

from __future__ import annotations

import json
import tempfile
import zipfile

import pytest

from segnet_tf.models import ModelFileError, load_model
from segnet_tf.models.loading import MAX_ARCHIVE_BYTES, MAX_ARCHIVE_MEMBERS, unsafe_reason

PLOT_MODEL = {"module": "keras.utils", "class_name": "plot_model", "config": {}}


def conv_field(field: str, value) -> callable:
    def edit(config):
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "Conv2D":
                layer["config"][field] = value

    return edit


def test_a_keras_utility_named_as_a_class_is_refused(good_model, tmp_path, hostile, dataset):
    """Issue 28 item 1: an activation ``{"module": "keras.utils", "class_name": "plot_model"}``
    passed the checker and Keras' safe mode, and ran on every forward pass (``predict`` printed
    a 60-line traceback, ``train --init-weights`` exited 0)."""
    path = hostile.edited_archive(
        good_model, tmp_path / "plot.keras", conv_field("activation", PLOT_MODEL)
    )
    with pytest.raises(ModelFileError) as refused:
        load_model(path)
    message = str(refused.value)
    assert "keras.utils.plot_model, a Keras function that is not a layer" in message
    assert "plot.keras" in message and "\n" not in message
    image = hostile.write_image(tmp_path / "frame.png")
    hostile.assert_refused(
        hostile.run_cli("predict", "--model", path, image, "--out", tmp_path / "p"), "plot_model"
    )
    assert not (tmp_path / "p").exists()
    train = ("train", "--data", dataset, "--init-weights", path, "--model", "segnet-basic")
    train += ("--width", "0.125", "--input-size", "16x16", "--epochs", "1")
    hostile.assert_refused(hostile.run_cli(*train, "--out", tmp_path / "t"), "plot_model")


@pytest.mark.parametrize(
    "field", ["activation", "kernel_initializer", "bias_initializer", "kernel_regularizer",
              "kernel_constraint"],
)  # fmt: skip
@pytest.mark.parametrize(
    "named, why",
    [
        (PLOT_MODEL, "a Keras function that is not a layer"),
        ({"module": "keras.utils", "class_name": "get_file", "config": {}}, "not a layer"),
        ({"module": "keras.config", "class_name": "enable_unsafe_deserialization"}, "not a layer"),
        ({"module": "keras.callbacks", "class_name": "BackupAndRestore"}, "a Keras class that"),
        ({"module": "keras.not_loaded", "class_name": "Thing"}, "neither Keras"),
        ({"module": "os", "class_name": "system"}, "names os.system"),
        ({"class_name": "function", "module": "keras.utils", "config": "plot_model"},
         "names the function keras.utils.plot_model"),
        ({"class_name": "function", "module": "builtins", "config": "exec"},
         "names the function builtins.exec"),
        ({"class_name": "Conv2D", "module": "keras.layers", "registered_name": "segnet_tf>Nope"},
         "'segnet_tf>Nope', which is registered by neither"),
        ({"class_name": "__typespec__", "spec_name": "x", "module": "os", "config": []},
         "__typespec__"),
    ],
)  # fmt: skip
def test_every_callable_bearing_field_is_checked(good_model, tmp_path, hostile, field, named, why):
    path = hostile.edited_archive(good_model, tmp_path / "m.keras", conv_field(field, named))
    with pytest.raises(ModelFileError, match="refused: it ") as refused:
        load_model(path)
    assert why in str(refused.value)


def test_the_allow_list_takes_what_keras_and_segnet_tf_write():
    allowed = [
        {"class_name": "Conv2D", "module": "keras.layers"},
        {"class_name": "Functional", "module": "keras.src.models.functional"},
        {"class_name": "HeNormal", "module": "keras.initializers"},
        {"class_name": "L2", "module": "keras.regularizers"},
        {"class_name": "AdamW", "module": "keras.optimizers"},
        {"class_name": "CosineDecay", "module": "keras.optimizers.schedules"},
        {"class_name": "DTypePolicy", "module": "keras"},
        {"class_name": "function", "module": "builtins", "config": "relu"},
        {"class_name": "function", "module": "keras.activations", "config": "softmax"},
        {"class_name": "MaxUnpooling2D", "module": "segnet_tf.layers",
         "registered_name": "segnet_tf>MaxUnpooling2D"},
        {"class_name": "__numpy__", "config": {"value": [1], "dtype": "float32"}},
    ]  # fmt: skip
    assert [unsafe_reason(node) for node in allowed] == [None] * len(allowed)


def test_a_2_gb_archive_is_refused_before_anything_is_unpacked(
    good_model, tmp_path, hostile, zeros_250mib, monkeypatch
):
    """Issue 28 item 2: a 9.7 MB ``.keras`` with eight 250 MiB assets wrote 2 GB to the
    temporary folder while Keras loaded it."""
    with zipfile.ZipFile(good_model) as real:  # config.json, metadata.json, model.weights.h5
        members = {info.filename: real.read(info) for info in real.infolist()}
    bomb = tmp_path / "bomb.keras"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in members.items():
            zout.writestr(name, data)
    with zipfile.ZipFile(bomb) as zin:  # the real members, re-deflated, plus eight assets
        crafted = {
            info.filename: (_raw_deflate(zin, info), info.CRC, info.file_size)
            for info in zin.infolist()
        }
    crafted |= {f"assets/blob{i}.bin": zeros_250mib for i in range(8)}
    hostile.zip_of_stored_deflate(bomb, crafted)
    assert bomb.stat().st_size < 10e6  # a 2 GB payload in a small download
    with zipfile.ZipFile(bomb) as check:  # a valid archive, as Keras would read it
        assert json.loads(check.read("config.json"))["class_name"] == "Functional"
        assert sum(i.file_size for i in check.infolist()) > 2e9

    unpacked = tmp_path / "tmp"
    unpacked.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(unpacked))
    with pytest.raises(ModelFileError) as refused:
        load_model(bomb)
    message = str(refused.value)
    assert f"unpacks to 2000 MiB, above the {MAX_ARCHIVE_BYTES // 2**20} MiB limit" in message
    assert "nothing was unpacked" in message and list(unpacked.iterdir()) == []
    hostile.assert_refused(
        hostile.run_cli("export", "--model", bomb, "--out", tmp_path / "e"), "2000 MiB"
    )
    assert not (tmp_path / "e").exists()


def test_an_archive_of_many_members_is_refused(good_model, tmp_path):
    path = tmp_path / "many.keras"
    with zipfile.ZipFile(good_model) as zin, zipfile.ZipFile(path, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, zin.read(item))
        for i in range(MAX_ARCHIVE_MEMBERS):
            zout.writestr(f"assets/{i}", b"")
    with pytest.raises(ModelFileError, match=f"holds {MAX_ARCHIVE_MEMBERS + 3} files"):
        load_model(path)


def _raw_deflate(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """The compressed bytes of a member as stored (after its local header)."""
    with open(archive.filename, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = (
            int.from_bytes(f.read(2), "little"),
            int.from_bytes(f.read(2), "little"),
        )
        f.seek(info.header_offset + 30 + name_len + extra_len)
        return f.read(info.compress_size)
