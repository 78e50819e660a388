"""A model folder as one ``.tar.gz``: verified by its SHA-256, unpacked only as the board's files.

The bundle crosses a network, so every test but the first is a hostile one: each crafted archive
is made here by a small builder, and each must be refused with one line, unpacking nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from edge_demo import DemoError, DemoFileNotFoundError, bundle, camera
from edge_demo.bundle import MARKER, unpack_bundle, write_bundle

FIXTURES = Path(__file__).resolve().parent / "fixtures"  # model.tflite, model_int8.tflite, labels


def craft(path: Path, members, fmt=tarfile.USTAR_FORMAT, checksum: bool = True) -> Path:
    """A gzip tar of ``members`` (``TarInfo`` with bytes or None) and its ``.sha256`` beside it."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, None if data is None else io.BytesIO(data))
    path.write_bytes(gzip.compress(raw.getvalue()))
    if checksum:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        Path(f"{path}.sha256").write_text(f"{digest}  {path.name}\n")
    return path


def member(name: str, kind: bytes = tarfile.REGTYPE, **fields) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in fields.items():
        setattr(info, key, value)
    return info


LABELS = (FIXTURES / "labels.json").read_bytes()


def refused(tmp_path: Path, path: Path, match: str, **kwargs) -> None:
    """``path`` is refused naming it, and nothing but the archive and its checksum is left."""
    before = set(tmp_path.iterdir())
    with pytest.raises(DemoError, match=match) as e:
        unpack_bundle(path, **kwargs)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert set(tmp_path.iterdir()) == before  # no folder, no staging folder


def test_an_exported_folder_round_trips_and_the_demo_runs_from_it(tmp_path, image_dir):
    packed = tmp_path / "segnet-fixture.tar.gz"
    digest = write_bundle(FIXTURES, packed)
    assert digest == hashlib.sha256(packed.read_bytes()).hexdigest()
    assert Path(f"{packed}.sha256").read_text() == f"{digest}  segnet-fixture.tar.gz\n"
    again = write_bundle(FIXTURES, tmp_path / "again.tar.gz")
    assert again == digest  # reproducible: sorted members, no times, no owners
    with tarfile.open(packed) as tar:
        assert tar.getnames() == ["labels.json", "model.tflite", "model_int8.tflite"]
    summary = camera.run(
        camera.build_parser().parse_args(
            ["--model", str(packed), "--source", str(image_dir), "--headless", "--max-frames", "2"]
        )
    )
    folder = tmp_path / "segnet-fixture"
    assert summary["model"] == str(folder / "model_int8.tflite") and summary["frames"] == 2
    for name in ("labels.json", "model.tflite", "model_int8.tflite"):
        assert (folder / name).read_bytes() == (FIXTURES / name).read_bytes()
    assert (folder / MARKER).read_text().strip() == digest
    mtime = (folder / "labels.json").stat().st_mtime_ns
    assert unpack_bundle(packed) == folder  # the same digest: reused, not unpacked again
    assert (folder / "labels.json").stat().st_mtime_ns == mtime
    # a newer bundle of the same name replaces the folder it unpacked before
    craft(packed, [(member("labels.json"), LABELS)])
    assert {p.name for p in unpack_bundle(packed).iterdir()} == {"labels.json", MARKER}


def test_a_checksum_that_does_not_match_is_refused(tmp_path):
    packed = craft(tmp_path / "b.tar.gz", [(member("labels.json"), LABELS)])
    refused(tmp_path, packed, "SHA-256 .* does not match the expected 0{64}", sha256="0" * 64)
    Path(f"{packed}.sha256").write_text(f"{'f' * 64}  b.tar.gz\n")
    refused(tmp_path, packed, "does not match the expected f{64}")
    Path(f"{packed}.sha256").write_text("not a digest\n")
    with pytest.raises(DemoError, match=r"b.tar.gz.sha256: not a SHA-256 digest"):
        unpack_bundle(packed)
    os.remove(f"{packed}.sha256")
    with pytest.raises(
        DemoFileNotFoundError, match="no checksum to verify it: pass --bundle-sha256"
    ):
        unpack_bundle(packed)
    with pytest.raises(DemoFileNotFoundError, match="missing.tar.gz: file not found"):
        unpack_bundle(tmp_path / "missing.tar.gz")


@pytest.mark.parametrize(
    ("members", "match"),
    [
        ([(member("../labels.json"), LABELS)], "'../labels.json' is not one of the bundle's files"),
        ([(member("/etc/labels.json"), LABELS)], "'/etc/labels.json' is not one of"),
        ([(member("run.sh"), b"#!/bin/sh\ntouch pwned\n")], "'run.sh' is not one of"),
        ([(member("labels.json", tarfile.SYMTYPE, linkname="/etc/passwd"), None)], "links are"),
        ([(member("labels.json", tarfile.LNKTYPE, linkname="labels.json"), None)], "links are"),
        ([(member("labels.json", tarfile.DIRTYPE), None)], "not a regular file"),
        ([(member("labels.json", tarfile.FIFOTYPE), None)], "not a regular file"),
        ([(member("labels.json"), LABELS)] * 2, "'labels.json' appears twice"),
        ([(member("model.tflite"), b"x")], "the bundle has no labels.json"),
    ],
    ids=[
        "dotdot",
        "absolute",
        "script",
        "symlink",
        "hardlink",
        "folder",
        "fifo",
        "twice",
        "nolabels",
    ],
)
def test_members_that_are_not_the_board_files_are_refused(tmp_path, members, match):
    refused(tmp_path, craft(tmp_path / "evil.tar.gz", members), match)
    assert not (tmp_path.parent / "labels.json").exists()


def test_gnu_long_names_and_pax_headers_are_refused_unread(tmp_path):
    """tarfile reads a GNU long name or a pax header into memory at its declared size; this
    reader refuses them on their type flag, before reading a byte of them."""
    long_name = [(member("x" * 200), b"data")]
    refused(tmp_path, craft(tmp_path / "g.tar.gz", long_name, tarfile.GNU_FORMAT), "not a regular")
    pax = [(member("labels.json", pax_headers={"comment": "x" * 1000}), LABELS)]
    refused(tmp_path, craft(tmp_path / "p.tar.gz", pax, tarfile.PAX_FORMAT), "not a regular file")


def test_sizes_are_capped_before_anything_is_written(tmp_path, monkeypatch):
    # a header that declares 4 GiB with no data behind it: refused on the header alone
    huge = [(member("model.onnx", size=4 * 2**30), None)]
    refused(tmp_path, craft(tmp_path / "huge.tar.gz", huge), "4294967296 bytes, over 512 MiB")
    monkeypatch.setattr(bundle, "MAX_FILE_BYTES", 1000)
    monkeypatch.setattr(bundle, "MAX_TOTAL_BYTES", 1500)
    refused(tmp_path, craft(tmp_path / "one.tar.gz", [(member("model.onnx"), bytes(1001))]), "1001")
    two = [(member("model.onnx"), bytes(900)), (member("model.tflite"), bytes(900))]
    refused(tmp_path, craft(tmp_path / "two.tar.gz", two), "add up to over")


def test_damaged_archives_and_folders_in_the_way_are_refused(tmp_path):
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"\x1f\x8b not really gzip" * 10)
    digest = hashlib.sha256(garbage.read_bytes()).hexdigest()
    refused(tmp_path, garbage, "not a gzip-compressed tar bundle", sha256=digest)
    whole = craft(tmp_path / "cut.tar.gz", [(member("labels.json"), LABELS)], checksum=False)
    raw = gzip.decompress(whole.read_bytes())
    whole.write_bytes(gzip.compress(raw[:600]))  # the header and 88 bytes of labels.json
    refused(tmp_path, whole, "truncated", sha256=hashlib.sha256(whole.read_bytes()).hexdigest())
    bad_header = bytearray(
        gzip.decompress(
            craft(tmp_path / "h.tar.gz", [(member("labels.json"), LABELS)]).read_bytes()
        )
    )
    bad_header[0] ^= 1  # the name changes, the header checksum no longer holds
    (tmp_path / "h.tar.gz").write_bytes(gzip.compress(bytes(bad_header)))
    refused(
        tmp_path,
        tmp_path / "h.tar.gz",
        "bad header",
        sha256=hashlib.sha256((tmp_path / "h.tar.gz").read_bytes()).hexdigest(),
    )

    good = craft(tmp_path / "mine.tar.gz", [(member("labels.json"), LABELS)])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's own folder")
    refused(tmp_path, good, "exists and was not unpacked from a bundle")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "the user's own folder"
    (tmp_path / "mine" / "notes.txt").unlink()
    (tmp_path / "mine").rmdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "mine").symlink_to(tmp_path / "elsewhere")
    refused(tmp_path, good, "is in the way")
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_the_demo_refuses_a_bad_bundle_in_one_line(tmp_path, image_dir, capsys):
    packed = craft(tmp_path / "b.tar.gz", [(member("labels.json"), LABELS)])
    argv = ["--model", str(packed), "--source", str(image_dir), "--headless"]
    assert camera.main([*argv, "--bundle-sha256", "ab" * 32]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --model ") and "does not match" in err
    assert json.loads(LABELS)  # the fixture itself is fine
