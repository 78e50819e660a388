"""The format table as flags -> files: what each option combination asks the exporter to write."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from segnet_tf.export import cli
from segnet_tf.export.exporter import FORMATS, ExportError, ExportOptions
from segnet_tf.export.tflite import PRECISIONS
from segnet_tf.layers import LOWERINGS


def files(**flags) -> list[str]:
    return [
        f.filename for f in ExportOptions(model=Path("m.keras"), out=Path("o"), **flags).formats()
    ]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({}, ["model.tflite"]),
        ({"int8": False}, ["model.tflite"]),
        ({"fp16": True}, ["model.tflite", "model_fp16.tflite"]),
        ({"int8": True}, ["model.tflite", "model_int8.tflite"]),
        ({"target": "edgetpu"}, ["model.tflite", "model_int8.tflite", "model_edgetpu.tflite"]),
        (
            {"target": "edgetpu", "int8": True, "fp16": True},
            ["model.tflite", "model_fp16.tflite", "model_int8.tflite", "model_edgetpu.tflite"],
        ),
    ],
)
def test_flags_to_files(flags, expected):
    assert files(**flags) == expected


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"target": "gpu"}, "--target must be one of cpu, edgetpu, got 'gpu'"),
        ({"target": "edgetpu", "int8": False}, "--target edgetpu runs int8 models only"),
        ({"target": "edgetpu", "equalize": False}, "needs equalized activations"),
        ({"parity_samples": 0}, "--parity-samples must be >= 1, got 0"),
    ],
)
def test_combinations_that_make_no_sense_are_rejected(flags, message):
    with pytest.raises(ExportError, match=message):
        files(**flags)


# the options that each flag of the table stands for
FLAG_OPTIONS = {
    "--fp16": {"fp16": True},
    "--int8": {"int8": True},
    "--target edgetpu": {"target": "edgetpu"},
    "--mc-samples N": {"mc_samples": 8},
    "--onnx": {"onnx": True},
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_the_table_says_which_flags_ask_for_each_file(name):
    fmt = FORMATS[name]
    for flags in fmt.asked_by:
        options = {k: v for flag in flags for k, v in FLAG_OPTIONS[flag].items()}
        assert fmt.filename in files(**options), flags
        for flag in flags:  # every flag of the set is needed
            fewer = {k: v for f in flags if f != flag for k, v in FLAG_OPTIONS[f].items()}
            assert fmt.filename not in files(**fewer), (flags, flag)
    assert FORMATS["tflite"].flags == "always"
    assert FORMATS["mc-int8"].flags == "--mc-samples N --int8 | --mc-samples N --target edgetpu"


def test_every_format_names_a_precision_and_a_lowering_that_exist():
    assert len({f.filename for f in FORMATS.values()}) == len(FORMATS)
    for fmt in FORMATS.values():
        assert fmt.precision in PRECISIONS and fmt.lowering in LOWERINGS, fmt


def test_cli_flags_reach_the_options(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(cli, "export_model", lambda options, log: seen.append(options))
    argv = ["--model", "m.keras", "--out", str(tmp_path), "--fp16", "--target", "edgetpu"]
    result = CliRunner().invoke(cli.export_command, argv)
    assert result.exit_code == 0, result.output
    assert [f.filename for f in seen[0].formats()] == files(fp16=True, target="edgetpu")
    help_text = CliRunner().invoke(cli.export_command, ["--help"]).output
    assert all(f.filename in help_text for f in FORMATS.values())
    assert (
        "model_int8.tflite      full int8 (ARM CPU, XNNPACK, NNAPI) (--int8 | --target" in help_text
    )
