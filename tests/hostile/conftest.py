"""Builders of hostile inputs, made at test time (nothing binary is committed): crafted ``.keras``
archives, image headers that lie, dataset folders, and the one-line checks every refusal must
pass. See docs/hostile_inputs.md for the table of attacks and answers."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import cv2
import keras
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis.configuration import set_hypothesis_home_dir

import segnet_tf
from segnet_tf.cli import cli
from segnet_tf.data import write_synthetic_dataset

REPO = Path(__file__).resolve().parents[2]
SIZE = (16, 16)
# Hypothesis caches constants under ./.hypothesis even without an example database: not in the
# checkout (the fuzzers' "no writes" includes the working folder).
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "segnet-tf-hypothesis")


# --- the checks ---------------------------------------------------------------------------------


def run_cli(*args) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_refused(result, *expected: str) -> str:
    """A click result that exits non-zero with at most three lines, no traceback, one error
    line, and every ``expected`` text in them; returns the error line."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert len(lines) <= 3 and "Traceback" not in result.output, result.output
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    for text in expected:
        assert text in result.output, result.output
    return errors[0]


def run_process(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """A real process (its stderr holds every library's warnings, C++ logs included)."""
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=cwd or REPO, timeout=300
    )


def assert_process_refused(proc: subprocess.CompletedProcess, *expected: str) -> None:
    output = (proc.stdout + proc.stderr).strip()
    lines = [line for line in output.splitlines() if line.strip()]
    assert proc.returncode not in (0, None), output
    assert len(lines) <= 3 and "Traceback" not in output, output
    for text in expected:
        assert text in output, output


# --- model archives ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def good_model(tmp_path_factory) -> Path:
    """A real (tiny) segnet-tf model."""
    path = tmp_path_factory.mktemp("hostile_models") / "good.keras"
    keras.utils.set_random_seed(0)
    segnet_tf.build_model("segnet-basic", (*SIZE, 3), 11, width=0.125).save(path)
    return path


def edited_archive(src: Path, dst: Path, edit: Callable[[dict], None]) -> Path:
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


def layers_of(config: dict, class_name: str) -> list[dict]:
    return [layer for layer in config["config"]["layers"] if layer["class_name"] == class_name]


def zip_of_stored_deflate(path: Path, members: dict[str, tuple[bytes, int, int]]) -> Path:
    """A zip whose members are given already deflated: ``name -> (raw deflate bytes, CRC-32,
    uncompressed size)``, so one compressed payload can stand for many large members."""
    local, central, offset = [], [], 0
    for name, (data, crc, size) in members.items():
        encoded = name.encode()
        header = struct.pack(
            "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(data), size, len(encoded), 0
        )
        central.append(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                8,
                0,
                0,
                crc,
                len(data),
                size,
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                offset,
            )  # fmt: skip
            + encoded
        )
        local.append(header + encoded + data)
        offset += len(header) + len(encoded) + len(data)
    directory = b"".join(central)
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(directory), offset, 0
    )
    path.write_bytes(b"".join(local) + directory + end)
    return path


@pytest.fixture(scope="session")
def zeros_250mib() -> tuple[bytes, int, int]:
    """250 MiB of zeros, deflated (about 250 kB), with its CRC: the asset of issue 28's bomb."""
    size, chunk = 250 * 2**20, bytes(2**24)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts, crc = [], 0
    for _ in range(size // len(chunk)):
        parts.append(compressor.compress(chunk))
        crc = zlib.crc32(chunk, crc)
    parts.append(compressor.flush())
    return b"".join(parts), crc, size


# --- images --------------------------------------------------------------------------------------


def png_declaring(width: int, height: int) -> bytes:
    """A small valid PNG whose IHDR then says ``width`` x ``height`` (CRC fixed up): issue 28's
    150-byte pixel bomb."""
    ok, buf = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))
    data = bytearray(buf.tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.fixture()
def dataset(tmp_path) -> Path:
    """A tiny synthetic dataset folder in CamVid's layout (list files + dataset folders)."""
    return write_synthetic_dataset(tmp_path / "data", train=2, val=2, size=SIZE)


def write_image(path: Path, shape=(*SIZE, 3)) -> Path:
    assert cv2.imwrite(str(path), np.zeros(shape, np.uint8))
    return path


@pytest.fixture(scope="session")
def hostile() -> SimpleNamespace:
    """The builders and checks above, for the test modules (which cannot import a conftest)."""
    return SimpleNamespace(
        run_cli=run_cli,
        assert_refused=assert_refused,
        run_process=run_process,
        assert_process_refused=assert_process_refused,
        edited_archive=edited_archive,
        layers_of=layers_of,
        zip_of_stored_deflate=zip_of_stored_deflate,
        png_declaring=png_declaring,
        write_image=write_image,
        size=SIZE,
        repo=REPO,
    )
