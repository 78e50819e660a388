"""The export folder replaced whole: a reader (the demo, a copy to the board) sees the old export
or the new one, never a mix, whatever kills the exporter and when.

Every artifact is written into a staging folder ``.NAME.partial-PID-*`` beside ``--out``. When
all of them passed their checks, files of the old ``--out`` that the export did not make (a
user's notes) are hard-linked into the staging folder, the old folder is renamed aside to
``.NAME.old-PID-*``, the staging folder renamed to ``--out``, and the old one deleted: two
renames, each atomic on one file system. A kill between them leaves no ``--out`` but the aside
folder, which the next export to that ``--out`` renames back before it starts; staging and aside
folders whose exporter (the PID in their name) no longer runs are removed then too. A ``kill -9``
therefore never leaves a mixed folder, and its leftovers last only until the next export.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

PARTIAL, OLD = "partial", "old"


def staging_folder(out: Path) -> Path:
    """A new staging folder beside ``out``, once the leftovers of killed exports to ``out`` are
    cleared; refuses an ``out`` that is a file before any work is done."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: a file is there, not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    recover(out)
    return Path(tempfile.mkdtemp(prefix=_prefix(out, PARTIAL) + f"{os.getpid()}-", dir=out.parent))


def swap_in(staging: Path, out: Path) -> None:
    """Replace ``out`` by the finished ``staging`` folder (see the module docstring)."""
    if out.is_dir():
        for item in out.iterdir():  # files the export did not make stay in the folder
            if not (staging / item.name).exists():
                _link_tree(item, staging / item.name)
        aside = Path(tempfile.mkdtemp(prefix=_prefix(out, OLD) + f"{os.getpid()}-", dir=out.parent))
        os.replace(out, aside / "out")  # a rename: the aside folder's content is the old export
        os.replace(staging, out)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(staging, out)


def recover(out: Path) -> None:
    """Undo what killed exports to ``out`` left: an old export renamed aside goes back when
    ``out`` is missing; staging and aside folders of exporters no longer running are removed."""
    for kind in (OLD, PARTIAL):
        for folder in sorted(out.parent.glob(_prefix(out, kind) + "*")):
            if not folder.is_dir() or _running(folder.name[len(_prefix(out, kind)) :]):
                continue
            if kind == OLD and not out.exists() and (folder / "out").is_dir():
                os.replace(folder / "out", out)
            shutil.rmtree(folder, ignore_errors=True)


def _prefix(out: Path, kind: str) -> str:
    return f".{out.name}.{kind}-"


def _running(suffix: str) -> bool:
    """Whether the process whose PID starts ``suffix`` (``PID-random``) is alive."""
    pid = suffix.partition("-")[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _link_tree(src: Path, dst: Path) -> None:
    """Hard links of ``src`` (a file or folder) at ``dst``; copies where links are refused."""

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, symlinks=True, copy_function=link)
    elif src.is_symlink():
        os.symlink(os.readlink(src), dst)
    else:
        link(str(src), str(dst))
