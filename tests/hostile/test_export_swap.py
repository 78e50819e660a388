"""Export's folder swap (issue 28, item 7): the new export replaces ``--out`` whole or not at all,
even under ``kill -9``, and what killed exports leave beside ``--out`` is cleared by the next."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from segnet_tf.export import staging as staging_module
from segnet_tf.export.staging import recover, staging_folder, swap_in

DEAD_PID = 2**22 + 1  # above Linux's pid_max: no process has it
STAGING = Path(staging_module.__file__)


def export_folder(path: Path, version: str) -> Path:
    """A fake export: its models and reports all say ``version``."""
    (path / "saved_model").mkdir(parents=True)
    (path / "saved_model" / "saved_model.pb").write_text(version)
    for name in ("model.tflite", "model_int8.tflite", "labels.json", "report.json"):
        (path / name).write_text(version)
    return path


def versions(folder: Path) -> set[str]:
    return {p.read_text() for p in folder.rglob("*") if p.is_file() and p.name != "notes.txt"}


def test_the_new_export_replaces_the_old_and_keeps_the_users_files(tmp_path):
    out = export_folder(tmp_path / "exported", "old")
    (out / "model_edgetpu.tflite").write_text("old")  # a file this export does not make
    (out / "notes.txt").write_text("mine")
    staging = export_folder(staging_folder(out), "new")
    assert staging.parent == tmp_path and staging.name.startswith(
        f".exported.partial-{os.getpid()}-"
    )
    swap_in(staging, out)
    assert versions(out) == {"new", "old"} and (out / "model_edgetpu.tflite").read_text() == "old"
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # nothing left beside it


def test_leftovers_of_killed_exports_are_cleared_and_the_old_export_comes_back(tmp_path):
    out = tmp_path / "exported"
    stale = export_folder(tmp_path / f".exported.partial-{DEAD_PID}-abc", "half")
    aside = tmp_path / f".exported.old-{DEAD_PID}-def"
    export_folder(aside / "out", "old")  # killed between its two renames: no --out at all
    live = tmp_path / f".exported.partial-{os.getpid()}-ghi"  # an export running now
    live.mkdir()
    other = tmp_path / ".other.partial-1-x"  # another --out's: not ours to touch
    other.mkdir()
    recover(out)
    assert versions(out) == {"old"} and not stale.exists() and not aside.exists()
    assert live.is_dir() and other.is_dir()
    # killed after its second rename: the new export is in place, the old one aside goes
    export_folder(aside / "out", "older")
    recover(out)
    assert versions(out) == {"old"} and not aside.exists()


def test_an_out_that_is_a_file_is_refused_before_any_work(tmp_path):
    out = tmp_path / "exported"
    out.write_text("a file")
    with pytest.raises(ValueError, match="--out .*exported: a file is there, not a folder"):
        staging_folder(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]


@pytest.mark.parametrize("kill_at", [1, 2])
def test_kill_9_during_the_swap_never_leaves_a_mixed_folder(tmp_path, kill_at):
    """A real SIGKILL at each rename of the swap; then the next export's start recovers."""
    out = export_folder(tmp_path / "exported", "old")
    script = textwrap.dedent(
        f"""
        import importlib.util, os, signal
        from pathlib import Path
        spec = importlib.util.spec_from_file_location("staging", {str(STAGING)!r})
        staging = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(staging)  # the module alone: no TensorFlow to import
        out = Path({str(out)!r})
        new = staging.staging_folder(out)
        for name in ("saved_model/saved_model.pb", "model.tflite", "model_int8.tflite",
                     "labels.json", "report.json"):
            (new / name).parent.mkdir(exist_ok=True)
            (new / name).write_text("new")
        real, calls = os.replace, []
        def replace(a, b):
            calls.append(a)
            if len(calls) == {kill_at}:
                os.kill(os.getpid(), signal.SIGKILL)
            real(a, b)
        staging.os.replace = replace
        staging.swap_in(new, out)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    if out.exists():
        assert len(versions(out)) == 1  # all old or all new
    recover(out)  # what the next export does first
    assert versions(out) == {"old"}  # killed before the new folder took its place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]


def test_export_to_a_file_is_one_line_and_leaves_nothing(tmp_path, hostile, good_model):
    out = tmp_path / "exported"
    out.write_text("a file")
    result = hostile.run_cli("export", "--model", good_model, "--out", out)
    hostile.assert_refused(result, "a file is there, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]
