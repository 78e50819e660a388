"""Crafted dataset files (issue 28, items 5 and 6): ``dataset.yaml`` values checked finite and in
range in one place (DatasetConfig), before ``data check`` or ``train`` can accept them; YAML and
list files that are not what they claim."""

from __future__ import annotations

import pytest

from segnet_tf.data import CAMVID, DatasetConfig, DatasetError, load_dataset_config, open_dataset

BASE = {"name": "roads", "class_names": ["road", "car"], "colours": [[1, 2, 3], [4, 5, 6]]}


def yaml_config(tmp_path, text: str):
    path = tmp_path / "dataset.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "extra, message",
    [
        ("class_weights: [.nan, 1.0]", "class weight nan is not a finite weight >= 0"),
        ("class_weights: [-5, 1.0]", "class weight -5.0 is not a finite weight >= 0"),
        ("class_weights: [.inf, 1.0]", "class weight inf is not a finite weight >= 0"),
        ("class_weights: [1.0]", "1 class weights for 2 classes"),
        ("class_weights: ['a', 1]", "'class_weights' holds a str, not a number"),
        ("void_id: -1", "void_id -1 is outside 0..65535"),
        ("void_id: 1", "void_id 1 is also a class id"),
        ("void_colour: [0, 0, 300]", "void_colour [0, 0, 300] is not [r, g, b] with values 0..255"),
    ],
)
def test_bad_values_in_dataset_yaml_are_refused(tmp_path, extra, message):
    text = "name: roads\nclass_names: [road, car]\ncolours: [[1, 2, 3], [4, 5, 6]]\n" + extra
    with pytest.raises(ValueError) as refused:
        load_dataset_config(yaml_config(tmp_path, text))
    assert message in str(refused.value) and "dataset.yaml" in str(refused.value)


@pytest.mark.parametrize(
    "colours, message",
    [
        ([[256, 0, 0], [4, 5, 6]], "colour of class 0 [256, 0, 0] is not [r, g, b] with values"),
        ([[1, 2, 3], [4, -5, 6]], "colour of class 1 [4, -5, 6]"),
        ([[1, 2], [4, 5, 6]], "'colours' holds something other than [r, g, b]"),
        ([[1, 2, 3.5], [4, 5, 6]], "'colours' holds a float, not an integer"),
    ],
)
def test_colours_outside_a_byte_are_refused(colours, message):
    """Issue 28 item 6: colours outside 0..255 passed ``data check`` and ``train``, then
    crashed ``predict`` and the demo with an OverflowError."""
    with pytest.raises(ValueError) as refused:
        DatasetConfig.from_dict({**BASE, "colours": colours})
    assert message in str(refused.value)


def test_duplicate_class_names_are_refused():
    """Issue 28 item 6: two classes of one name collapsed evaluate's table to one row."""
    with pytest.raises(ValueError, match="class name 'road' is given 2 times"):
        DatasetConfig.from_dict({**BASE, "class_names": ["road", "road"]})


def test_data_check_and_train_refuse_the_file_in_one_line(tmp_path, dataset, hostile):
    (dataset / "dataset.yaml").write_text(
        "name: roads\nclass_names: [road, car]\ncolours: [[1, 2, 3], [4, 5, 6]]\n"
        "class_weights: [.nan, 1]\n"
    )
    hostile.assert_refused(hostile.run_cli("data", "check", "--data", dataset), "class weight nan")
    result = hostile.run_cli("train", "--data", dataset, "--epochs", "1", "--out", tmp_path / "r")
    hostile.assert_refused(result, "dataset.yaml", "class weight nan")


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\xff\xfe\x00 not text", "not valid YAML"),
        (b"class_names: [a\ncolours: {", "not valid YAML"),
        (b"- just\n- a list\n", "expected a mapping"),
        (b"class_names: abc\ncolours: [[1, 2, 3]]\n", "'class_names' must be a list, not str"),
        (b"class_names: [[a]]\ncolours: [[1, 2, 3]]\n", "'class_names' holds a list, not a name"),
        (b"!!python/object/apply:os.system [echo hi]", "not valid YAML"),
        (b"[" * 2000, "not valid YAML"),  # deeper than Python's recursion limit
    ],
    ids=["binary", "broken", "list", "str-names", "nested-names", "python-tag", "deep"],
)
def test_yaml_that_is_not_a_config_is_one_line(tmp_path, content, message):
    path = tmp_path / "dataset.yaml"
    path.write_bytes(content)
    with pytest.raises(ValueError) as refused:
        load_dataset_config(path)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_a_yaml_alias_bomb_is_refused_without_expanding_it(tmp_path):
    """Nine levels of nine aliases: 387 million strings if anything expanded or printed it."""
    lines = ['a0: &a0 ["lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    lines += ["name: *a9", "class_names: *a9", "colours: [[1, 2, 3]]"]
    path = tmp_path / "dataset.yaml"
    path.write_text("\n".join(lines))
    with pytest.raises(ValueError, match="'name' holds a list, not a name"):
        load_dataset_config(path)


def test_a_huge_config_file_is_not_read(tmp_path):
    path = tmp_path / "dataset.yaml"
    with open(path, "wb") as f:
        f.truncate(2**30)  # sparse: a 1 GiB file that takes no disk
    with pytest.raises(ValueError, match="too large for a dataset config"):
        load_dataset_config(path)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\xff\xfe garbage\n", "not a text list file"),
        (b"a.png\x00 b.png\n", "train.txt:1: control characters in the line"),
        (b"a.png b.png\n\x1b[31mred.png b.png\n", "train.txt:2: control characters"),
        (b"a b c\n", "train.txt:1: expected 'image label'"),
        (b"# only a comment\n", "list file has no 'image label' lines"),
    ],
)
def test_list_files_that_are_not_lists_are_one_line(tmp_path, content, message):
    (tmp_path / "train.txt").write_bytes(content)
    with pytest.raises(DatasetError) as refused:
        open_dataset(tmp_path)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_the_builtin_configs_pass_their_own_checks():
    assert DatasetConfig.from_dict(CAMVID.to_dict()) == CAMVID
