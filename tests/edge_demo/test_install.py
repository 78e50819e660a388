"""The board side installs on its own: ``pip install ./edge_demo`` into a clean virtual
environment (no system site packages, so no TensorFlow, Keras or segnet_tf), then the
``segnet-edge`` command runs the committed fixtures as ``python edge_demo/camera.py`` does."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

EDGE = Path(__file__).resolve().parents[2] / "edge_demo"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
FLOOR = (3, 10)  # JetPack 6's Python


def test_the_python_floor_is_stated_and_the_code_parses_on_it():
    """``requires-python`` says 3.10, and every module parses with 3.10's grammar (no 3.11
    ``except*``, no 3.12 type statements or generic syntax)."""
    project = tomllib.loads((EDGE / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == f">={FLOOR[0]}.{FLOOR[1]}"
    for path in EDGE.glob("*.py"):
        ast.parse(path.read_text(), str(path), feature_version=FLOOR)
    # nothing the board side depends on is the trainer's
    names = {d.split(">")[0].split("=")[0].split("[")[0].strip() for d in project["dependencies"]}
    assert names == {"numpy", "opencv-python-headless", "ai-edge-litert"}


@pytest.mark.slow
def test_pip_install_gives_segnet_edge_without_tensorflow(tmp_path, image_dir):
    env = tmp_path / "venv"
    venv.create(env, with_pip=True, system_site_packages=False)
    python = env / "bin" / "python"
    source = tmp_path / "edge_demo"  # a copy: pip's build leaves build/ beside the sources
    shutil.copytree(
        EDGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)],
        check=True, timeout=600,
    )  # fmt: skip
    missing = subprocess.run(
        [python, "-c", "import importlib.util as u; print([m for m in "
         "('tensorflow', 'keras', 'segnet_tf') if u.find_spec(m)])"],
        capture_output=True, text=True, check=True, cwd=tmp_path,  # not the checkout
    )  # fmt: skip
    assert missing.stdout.strip() == "[]"
    out = tmp_path / "summary.json"
    args = [
        "--model", str(FIXTURES / "model_int8.tflite"), "--source", str(image_dir), "--headless",
        "--view", "mask", "--output", str(tmp_path / "masks"), "--json", str(out),
    ]  # fmt: skip
    done = subprocess.run(
        [env / "bin" / "segnet-edge", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(out.read_text())
    assert summary["frames"] == 5 and summary["runtime"] == "ai_edge_litert"
    assert len(list((tmp_path / "masks").iterdir())) == 5
    assert "XNNPACK" not in done.stderr  # a quiet start there too
    # the same program as the checkout's script, run by the checkout's Python
    here = subprocess.run(
        [sys.executable, str(EDGE / "camera.py"), *args[:-1], str(tmp_path / "here.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert here.returncode == 0, here.stderr
    ours = json.loads((tmp_path / "here.json").read_text())
    assert (ours["frames"], ours["model"], ours["precision"]) == (5, summary["model"], "int8")
    options = [
        re.findall(r"^  (--[\w-]+)", done.stdout, re.MULTILINE)
        for done in (
            subprocess.run(
                [*cmd, "--help"], capture_output=True, text=True, check=True, cwd=tmp_path
            )
            for cmd in ([env / "bin" / "segnet-edge"], [sys.executable, str(EDGE / "camera.py")])
        )
    ]
    assert options[0] == options[1] and "--bundle-sha256" in options[0]
    # installed, there is no shipped model to fall back on: --model is asked for by name
    bare = subprocess.run(
        [env / "bin" / "segnet-edge", "--source", str(image_dir), "--headless"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert bare.returncode == 1 and bare.stderr.startswith("error: no model given: pass --model")
