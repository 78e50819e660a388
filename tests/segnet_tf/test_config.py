"""Training options in one place: sizes parsed, every number finite and in range, every choice
known, input and crop sizes fixed once, the options handed on as JSON unchanged."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from segnet_tf.config import (
    DEFAULTS,
    NUMBERS,
    TrainConfig,
    option_name,
    parse_size,
    resolve,
)


def test_parse_size_reads_height_by_width():
    assert parse_size("360x480") == (360, 480)
    assert parse_size("45X61") == (45, 61)
    assert parse_size(" 16 x 16") == (16, 16)  # any 4-pool size: the model says what fits


@pytest.mark.parametrize("text", ["360", "0x480", "-8x16", "1e3x16", "16x16x3", "axb", "x", ""])
def test_parse_size_refuses_what_is_not_two_positive_integers(text):
    with pytest.raises(ValueError, match=f"{text!r}: expected HEIGHTxWIDTH with positive integers"):
        parse_size(text)


def test_resolve_fixes_the_sizes_and_paths_once(tmp_path):
    synthetic = resolve(TrainConfig(out="run"))
    assert synthetic.input_size == (96, 128) and synthetic.crop_size is None  # crop = whole
    assert synthetic.out == str(Path("run").resolve())
    data = resolve(TrainConfig(out=str(tmp_path), data="roads"))
    assert data.input_size == (360, 480) and data.crop_size == (240, 320)  # the default crop
    assert data.data == str(Path("roads").resolve())
    small = resolve(TrainConfig(out="r", data="roads", input_size=(180, 240)))
    assert small.crop_size is None  # the whole 180x240 frame is smaller than 240x320
    assert resolve(TrainConfig(out="r", data="d", augment="none")).crop_size is None
    assert resolve(TrainConfig(out="r", augment=False)).augment == "none"  # the old on/off flag
    for config in (synthetic, data, small):
        assert resolve(config) == config  # a worker resolving what it was handed changes nothing
        assert TrainConfig.from_json(config.to_json()) == config


def test_every_default_is_in_range_and_every_number_field_has_bounds():
    config = TrainConfig(out="r")
    for name, bounds in NUMBERS.items():
        value = DEFAULTS[name]
        assert value is None or bounds.holds(value), name
    numeric = [n for n, v in DEFAULTS.items() if isinstance(v, int | float) and v is not False]
    assert set(numeric) - {"resume", "dropout"} <= set(NUMBERS)
    assert resolve(config).epochs == 5
    assert option_name("crop_size") == "--crop" and option_name("lr") == "--lr"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("lr", math.nan, "--lr nan: must be a finite number > 0"),
        ("lr", math.inf, "--lr inf: must be a finite number > 0"),
        ("lr", 0.0, "--lr 0.0: must be a finite number > 0"),
        ("weight_decay", math.nan, "--weight-decay nan: must be a finite number >= 0"),
        ("weight_decay", -1e-4, "--weight-decay -0.0001: must be a finite number >= 0"),
        ("width", math.inf, r"--width inf: must be a finite number in \(0, 4\]"),
        ("width", math.nan, r"--width nan: must be a finite number in \(0, 4\]"),
        ("width", 8.0, r"--width 8.0: must be a finite number in \(0, 4\]"),
        ("epochs", 0, "--epochs 0: must be an integer >= 1"),
        ("epochs", 2.5, "--epochs 2.5: must be an integer >= 1"),
        ("batch_size", -1, "--batch-size -1: must be an integer >= 1"),
        ("seed", -1, "--seed -1: must be an integer 0..4294967295"),
        ("seed", 2**32, "--seed 4294967296: must be an integer 0..4294967295"),
        ("encoder_lr_mult", math.inf, "--encoder-lr-mult inf: must be a finite number > 0"),
        ("freeze_encoder_epochs", -1, "--freeze-encoder-epochs -1: must be an integer >= 0"),
        ("freeze_encoder_epochs", 6, r"--freeze-encoder-epochs 6: must be 0..--epochs \(5\)"),
        ("synthetic_train", 0, "--synthetic-train 0: must be an integer >= 1"),
        ("strategy", "ring", "--strategy 'ring': choose one of auto, mirrored"),
        ("augment", "wild", "--augment 'wild': choose one of none, default, strong"),
        ("precision", "half", "--precision 'half': choose one of auto, float32"),
        ("model", "segnet-huge", "unknown model 'segnet-huge'"),
        ("input_size", (16, 16), "--input-size 16x16: segnet-lite: input height 16 is too small"),
        ("crop_size", (8, 64), "--crop 8x64: segnet-lite: input height 8 is too small"),
    ],
)
def test_resolve_refuses_each_bad_option_in_one_line_naming_it(field, value, message):
    with pytest.raises(ValueError, match=message) as error:
        resolve(replace(TrainConfig(out="r"), **{field: value}))
    assert "\n" not in str(error.value)


def test_resolve_refuses_crops_without_augmentation_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="--crop takes random crops"):
        resolve(TrainConfig(out="r", crop_size=(32, 32), augment="none"))
    with pytest.raises(FileNotFoundError, match="--init-weights .*no such model file"):
        resolve(TrainConfig(out="r", init_weights=str(tmp_path / "nope.keras")))
    basic = TrainConfig(out="r", model="segnet-basic", input_size=(16, 16))
    assert resolve(basic).input_size == (16, 16)  # 4 poolings fit 16x16
