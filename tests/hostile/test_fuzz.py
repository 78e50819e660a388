"""Property-based fuzzing of the parsers that face the outside: the upload parser, ``labels.json``,
``dataset.yaml`` and list files. Whatever the bytes, the answer is a result or a clean error (one
line; a 4xx for the server), and nothing is written. Bounded: a fixed number of examples, derived
from a fixed seed, no example database (a few seconds in CI)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_demo import DemoError
from edge_demo.contract import load_labels
from edge_demo.uploads import Refusal, decode_upload, upload_image_bytes
from segnet_tf.data import DatasetError, load_dataset_config, open_dataset

BOUNDED = settings(
    max_examples=100,
    deadline=None,  # a shared 2-core CI machine: bounded by count, not by a clock
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
label_keys = st.sampled_from(["class_names", "colours", "input_size", "num_classes", "monte_carlo"])
config_keys = st.sampled_from(
    ["name", "class_names", "colours", "void_id", "void_colour", "class_weights"]
)


def assert_one_line(error: BaseException) -> None:
    message = str(error)
    assert message and "\n" not in message, repr(message)


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --- uploads -------------------------------------------------------------------------------------

part = st.tuples(
    st.sampled_from([b"", b'Content-Disposition: form-data; name="image"; filename="a.png"',
                     b'Content-Disposition: form-data; name="view"', b"X: y"]),
    st.binary(max_size=64) | st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xdb", b"mask"]),
)  # fmt: skip


@st.composite
def multipart_bodies(draw) -> tuple[bytes, str]:
    boundary = draw(st.sampled_from([b"b", b"XyZ", b"--", b"a" * 70]))
    parts = draw(st.lists(part, max_size=12))
    body = b"".join(b"--" + boundary + b"\r\n" + h + b"\r\n\r\n" + c + b"\r\n" for h, c in parts)
    body += draw(st.sampled_from([b"--" + boundary + b"--\r\n", b"", b"--" + boundary]))
    content_type = "multipart/form-data; boundary=" + boundary.decode()
    return body, draw(st.sampled_from([content_type, "multipart/form-data", "image/png", ""]))


def check_upload(body: bytes, content_type: str) -> None:
    try:
        data, view = upload_image_bytes(body, content_type)
        image = decode_upload(data)
    except Refusal as e:
        assert 400 <= e.status < 500, e.status
        assert_one_line(e)
        return
    assert isinstance(image, np.ndarray) and image.ndim == 3
    assert view is None or isinstance(view, str)


@BOUNDED
@given(multipart_bodies())
def test_multipart_forms_are_parsed_or_refused_with_a_4xx(form):
    check_upload(*form)


@BOUNDED
@given(st.binary(max_size=512), st.sampled_from(["image/png", "multipart/form-data; boundary=b"]))
def test_any_upload_bytes_are_parsed_or_refused_with_a_4xx(body, content_type):
    check_upload(body, content_type)


# --- files ---------------------------------------------------------------------------------------


def read_in_folder(name: str, content: bytes, read) -> None:
    """``read(path)`` of a file of ``content`` in a fresh folder, which must not change."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / name).write_bytes(content)
        before = files_in(root)
        try:
            read(root / name)
        finally:
            assert files_in(root) == before


@BOUNDED
@given(st.dictionaries(label_keys, json_values, max_size=5) | json_values)
def test_labels_json_is_read_or_refused_in_one_line(data):
    content = json.dumps(data).encode()
    try:
        read_in_folder("labels.json", content, load_labels)
    except DemoError as e:
        assert_one_line(e)


@BOUNDED
@given(st.binary(max_size=256))
def test_labels_json_bytes_are_read_or_refused_in_one_line(content):
    try:
        read_in_folder("labels.json", content, load_labels)
    except DemoError as e:
        assert_one_line(e)


@BOUNDED
@given(st.dictionaries(config_keys, json_values, max_size=6))
def test_dataset_yaml_is_read_or_refused_in_one_line(data):
    try:
        read_in_folder("dataset.yaml", yaml.safe_dump(data).encode(), load_dataset_config)
    except ValueError as e:
        assert_one_line(e)


@BOUNDED
@given(st.binary(max_size=256))
def test_dataset_yaml_bytes_are_read_or_refused_in_one_line(content):
    try:
        read_in_folder("dataset.yaml", content, load_dataset_config)
    except ValueError as e:
        assert_one_line(e)


@BOUNDED
@given(st.lists(st.binary(max_size=40) | st.text(max_size=40).map(str.encode), max_size=6))
def test_list_files_are_read_or_refused_in_one_line(lines):
    try:
        read_in_folder("train.txt", b"\n".join(lines), lambda path: open_dataset(path.parent))
    except (DatasetError, FileNotFoundError) as e:
        assert_one_line(e)


def test_the_fuzzers_leave_the_working_folder_alone():
    """No example database (``.hypothesis/``) in the checkout."""
    assert not (Path(os.getcwd()) / ".hypothesis").exists()
