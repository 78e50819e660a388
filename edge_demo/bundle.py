"""A model folder as one file: a ``.tar.gz`` bundle with a SHA-256 the demo verifies.

``segnet-tf export --bundle`` writes ``NAME.tar.gz`` and ``NAME.tar.gz.sha256`` (``sha256sum``'s
format); on the board ``--model NAME.tar.gz`` checks the digest (given by ``--bundle-sha256`` or
the ``.sha256`` file beside it), unpacks into ``NAME/`` beside it and runs from there.

A downloaded bundle is hostile input until proven otherwise, and a digest from the same server
proves only that nothing changed on the way. So the reader is this module's own ustar parser
rather than :mod:`tarfile` (whose GNU long-name and pax headers are read into memory whole, at
any declared size): it takes only regular files whose names are on :data:`BUNDLE_FILES` (no
paths, so nothing lands outside the folder; no links, devices or folders), at most
:data:`MAX_FILE_BYTES` each and :data:`MAX_TOTAL_BYTES` together, counted as they are
decompressed, and unpacks into a fresh folder that replaces the old one only when complete.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import io
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterable
from pathlib import Path

from edge_demo import DemoError, DemoFileNotFoundError
from edge_demo.contract import (
    CLASSES_FILE,
    COLOURS_FILE,
    LABELS_FILE,
    MODEL_FILES,
    REPORT_FILE,
)

BUNDLE_SUFFIX = ".tar.gz"
CHECKSUM_SUFFIX = ".sha256"
MARKER = ".bundle-sha256"  # in an unpacked folder: the digest of the bundle it came from
BUNDLE_FILES = (*MODEL_FILES.values(), LABELS_FILE, CLASSES_FILE, COLOURS_FILE, REPORT_FILE)
# A full-width SegNet's float32 ONNX is about 120 MB and a segnet-lite folder about 25 MB:
# these caps leave room for both and stop a bundle from filling a board's disk.
MAX_FILE_BYTES = 512 * 2**20
MAX_TOTAL_BYTES = 1024 * 2**20
_BLOCK = 512
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def is_bundle(path: str | Path) -> bool:
    return str(path).lower().endswith(BUNDLE_SUFFIX)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_bundle(folder: Path, bundle: Path) -> str:
    """Pack the board files of ``folder`` into ``bundle`` (reproducibly: sorted, mtime 0, no
    owner) and write ``bundle.sha256`` beside it; returns the digest."""
    names = [n for n in BUNDLE_FILES if (folder / n).is_file()]
    with open(bundle, "wb") as raw, gzip.GzipFile("", "wb", fileobj=raw, mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name in sorted(names):
                info = tarfile.TarInfo(name)
                info.size = (folder / name).stat().st_size
                info.mode = 0o644
                with open(folder / name, "rb") as f:
                    tar.addfile(info, f)
    digest = sha256_of(bundle)
    Path(f"{bundle}{CHECKSUM_SUFFIX}").write_text(f"{digest}  {bundle.name}\n")
    return digest


def expected_digest(bundle: Path, sha256: str | None) -> str:
    """The digest to check ``bundle`` against: ``sha256``, else the ``.sha256`` file beside it."""
    source = "--bundle-sha256"
    if sha256 is None:
        checksum = Path(f"{bundle}{CHECKSUM_SUFFIX}")
        if not checksum.is_file():
            raise DemoFileNotFoundError(
                f"--model {bundle}: no checksum to verify it: pass --bundle-sha256 HEX or put "
                f"{checksum.name} (from the same export) beside it"
            )
        if checksum.stat().st_size > 4096:
            raise DemoError(f"{checksum}: not a sha256sum line (larger than 4 KB)")
        text = checksum.read_text(errors="replace").split()
        sha256, source = (text[0] if text else ""), str(checksum)
    sha256 = sha256.strip().lower()
    if not _HEX64.match(sha256):
        raise DemoError(f"{source}: not a SHA-256 digest (64 hex digits)")
    return sha256


def unpack_bundle(bundle: str | Path, sha256: str | None = None) -> Path:
    """Verify ``bundle`` and unpack it into the folder beside it named after it; returns the
    folder. A folder already unpacked from the same digest is reused as it is."""
    bundle = Path(bundle)
    if not bundle.is_file():
        raise DemoFileNotFoundError(f"--model {bundle}: file not found")
    want = expected_digest(bundle, sha256)
    if bundle.stat().st_size > MAX_TOTAL_BYTES:
        raise DemoError(f"--model {bundle}: larger than {MAX_TOTAL_BYTES >> 20} MiB")
    got = sha256_of(bundle)
    if not hmac.compare_digest(got, want):
        raise DemoError(
            f"--model {bundle}: SHA-256 {got} does not match the expected {want}: "
            "the download is incomplete or not the file that was published"
        )
    folder = bundle.with_name(bundle.name[: -len(BUNDLE_SUFFIX)])
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise DemoError(f"--model {bundle}: {folder} is in the way (a link or a file)")
    marker = folder / MARKER
    if folder.is_dir():
        if not marker.is_file():
            raise DemoError(
                f"--model {bundle}: {folder} exists and was not unpacked from a bundle; "
                "move it away"
            )
        if marker.read_text().strip() == got:
            return folder
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.unpack-", dir=bundle.parent))
    try:
        try:
            with gzip.open(bundle, "rb") as stream:
                names = list(_extract(stream, staging))
        except (OSError, EOFError, zlib.error) as e:
            raise DemoError(f"--model {bundle}: not a gzip-compressed tar bundle: {e}") from None
        except DemoError as e:
            raise DemoError(f"--model {bundle}: {e}") from None
        if LABELS_FILE not in names:
            raise DemoError(f"--model {bundle}: the bundle has no {LABELS_FILE}")
        (staging / MARKER).write_text(got + "\n")
        _swap_in(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _extract(stream: io.BufferedIOBase, into: Path) -> Iterable[str]:
    """Write each member of a ustar ``stream`` into ``into``; yields the names written."""
    seen: set[str] = set()
    total = 0
    while True:
        header = _read_exactly(stream, _BLOCK)
        if header is None or header == bytes(_BLOCK):  # end of archive
            return
        name, size, kind = _parse_header(header)
        if kind not in (b"0", b"\0"):
            raise DemoError(f"member {name!r} is not a regular file (links are refused)")
        if name not in BUNDLE_FILES:
            raise DemoError(f"member {name!r} is not one of the bundle's files")
        if name in seen:
            raise DemoError(f"member {name!r} appears twice")
        if size > MAX_FILE_BYTES:
            raise DemoError(f"member {name!r} is {size} bytes, over {MAX_FILE_BYTES >> 20} MiB")
        total += size
        if total > MAX_TOTAL_BYTES:
            raise DemoError(f"members add up to over {MAX_TOTAL_BYTES >> 20} MiB")
        seen.add(name)
        with open(into / name, "xb") as out:
            left = size
            while left:
                chunk = stream.read(min(left, 1 << 20))
                if not chunk:
                    raise DemoError(f"member {name!r} is truncated")
                out.write(chunk)
                left -= len(chunk)
        padding = -size % _BLOCK
        if padding and _read_exactly(stream, padding) is None:
            raise DemoError(f"member {name!r} is truncated")
        yield name


def _read_exactly(stream: io.BufferedIOBase, n: int) -> bytes | None:
    data = stream.read(n)
    if not data:
        return None
    if len(data) != n:
        raise DemoError("the archive is truncated")
    return data


def _parse_header(header: bytes) -> tuple[str, int, bytes]:
    """``(name, size, typeflag)`` of a ustar header block, its checksum verified."""
    stored = header[148:156]
    computed = sum(header[:148]) + 8 * 32 + sum(header[156:])
    try:
        if int(stored.rstrip(b"\0 ") or b"-1", 8) != computed:
            raise ValueError
        size = int(header[124:136].rstrip(b"\0 ") or b"0", 8)
        name = header[:100].split(b"\0", 1)[0].decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise DemoError("not a tar archive (bad header)") from None
    if header[345:346] != b"\0":  # ustar's name prefix: a path, which no bundle member has
        raise DemoError(f"member {name!r} has a path prefix")
    return name, size, header[156:157]


def _swap_in(staging: Path, folder: Path) -> None:
    """Put the complete ``staging`` folder in place of ``folder`` (an older unpacked bundle)."""
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
        os.replace(folder, old)
    os.replace(staging, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
