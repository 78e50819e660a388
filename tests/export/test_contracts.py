"""What the exporter and the board-side demo share without importing each other: the
``labels.json`` format and the input quantisation rule. Each side keeps its own code; these
tests hold the two to one contract."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_demo import contract, runtime
from segnet_tf.data import CAMVID, DatasetConfig
from segnet_tf.export.labels import LABELS_FILE, write_labels
from segnet_tf.export.tflite import TFLiteModel, quantise

FIXTURES = Path(__file__).resolve().parents[1] / "edge_demo" / "fixtures"  # exporter-made
THREE = DatasetConfig(
    name="three",
    class_names=("road", "lane marking", "kerb"),
    colours=((128, 64, 128), (255, 255, 255), (90, 90, 0)),
    void_id=255,
)


@pytest.mark.parametrize("config", [CAMVID, THREE], ids=lambda c: c.name)
def test_labels_written_by_the_library_read_by_the_demo(config, tmp_path):
    path = write_labels(tmp_path, config, "segnet-lite", (45, 61))
    assert path == tmp_path / LABELS_FILE == tmp_path / "labels.json"  # the demo's default name
    labels = contract.load_labels(path)
    assert labels.class_names == config.class_names
    assert labels.colours == config.colours
    assert labels.input_size == (45, 61)
    assert labels.num_classes == config.num_classes
    assert labels.model == "segnet-lite"
    assert json.loads(path.read_text())["void_id"] == config.void_id


TIES = np.arange(-300, 301) + 0.5  # x / scale = k + 0.5 at scale 1


@pytest.mark.parametrize(
    ("dtype", "scale", "zero_point"),
    [(np.int8, 1.0, -128), (np.int8, 0.5, 3), (np.uint8, 2.0, 10), (np.int8, 0.0235, -7)],
)
def test_exporter_and_demo_quantise_alike(dtype, scale, zero_point):
    rng = np.random.default_rng(0)
    for x in (TIES * scale, rng.uniform(-400, 400, 5000) * scale, np.arange(256.0)):
        ours, demos = (
            quantise(x, dtype, scale, zero_point),
            contract.quantise(x, dtype, scale, zero_point),
        )
        assert ours.dtype == demos.dtype == dtype
        np.testing.assert_array_equal(ours, demos)
    # half to even on both sides: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0, -1.5 -> -2
    ties = np.array([0.5, 1.5, 2.5, -0.5, -1.5], np.float32)
    np.testing.assert_array_equal(quantise(ties, np.int8, 1.0, 0), [0, 2, 2, 0, -2])


def test_parity_runner_feeds_the_model_what_the_demo_feeds_it():
    """The exporter's parity report and the camera loop quantise a frame identically, and read
    the same class scores back."""
    path = FIXTURES / "model_int8.tflite"
    ours = TFLiteModel(path.read_bytes())
    demo = runtime.load_model(path)
    frame_bgr = np.random.default_rng(1).integers(0, 256, (*ours.input_size, 3), dtype=np.uint8)
    rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB).astype(np.float32)
    x = demo.preprocess(frame_bgr)
    np.testing.assert_array_equal(ours.quantize_input(rgb), x)
    np.testing.assert_array_equal(ours(rgb), demo.scores(demo.infer(x)))


# ----------------------------------------------------------------- one table of file names

BOARD_FILES = (
    *contract.MODEL_FILES.values(),
    contract.LABELS_FILE,
    contract.REPORT_FILE,
    contract.CLASSES_FILE,
    contract.COLOURS_FILE,
)
REPO = Path(__file__).resolve().parents[2]


def string_literals(path: Path) -> list[tuple[int, str]]:
    """Every string constant of a module but its docstrings (f-string pieces included)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


@pytest.mark.parametrize(
    "module",
    sorted(
        {*(REPO / "export").glob("*.py"), *(REPO / "edge_demo").glob("*.py")}
        - {REPO / "edge_demo" / "contract.py"}
    ),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_file_names_come_from_the_contract_table(module):
    """The exporter and the demo spell no model, labels or report file name themselves: they
    read edge_demo/contract.py, so a renamed file cannot leave one side behind."""
    found = [
        f"{module.name}:{line}: {text!r}"
        for line, text in string_literals(module)
        if any(re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text) for name in BOARD_FILES)
    ]
    assert found == []


def test_the_exporters_formats_and_the_demos_orders_are_the_table():
    from segnet_tf.export.edgetpu import compiled_name
    from segnet_tf.export.exporter import FORMATS

    assert {name: f.filename for name, f in FORMATS.items()} == {
        k: v for k, v in contract.MODEL_FILES.items() if k != "edgetpu-compiled"
    }
    # edgetpu_compiler names its output <stem>_edgetpu.tflite: the demo looks for exactly that
    assert (
        compiled_name(contract.MODEL_FILES["edgetpu"]) == contract.MODEL_FILES["edgetpu-compiled"]
    )
    orders = (contract.CPU_ORDER, contract.GPU_DELEGATE_ORDER, contract.EDGETPU_ORDER)
    assert {n for order in (*orders, contract.MC_ORDER) for n in order} <= set(
        contract.MODEL_FILES.values()
    )
    monte_carlo = {f.filename for f in FORMATS.values() if f.monte_carlo}
    assert set(contract.MC_ORDER) == monte_carlo


def _module_of(package: str, name: str) -> str:
    parts = package.split(".")
    folder = {"edge_demo": REPO / "edge_demo", "segnet_tf.export": REPO / "export"}.get(package)
    return f"{package}.{name}" if folder and (folder / f"{name}.py").is_file() else ".".join(parts)


def test_the_board_imports_no_trainer_and_no_module_imports_back():
    """edge_demo never imports segnet_tf or TensorFlow (but the TFLite backend's last-resort
    runtime), and no module of edge_demo/ or export/ imports one that imports it back,
    counting imports inside functions."""
    graph: dict[str, set[str]] = {}
    for folder, package in (
        (REPO / "edge_demo", "edge_demo"),
        (REPO / "export", "segnet_tf.export"),
    ):
        for path in folder.glob("*.py"):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            imported = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    imported |= {a.name for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    # `from package import module` depends on the module, not the package
                    imported |= {_module_of(node.module, a.name) for a in node.names}
            graph[name] = imported
    for name, imported in graph.items():
        if name.startswith("edge_demo"):
            trainer = {m for m in imported if m.split(".")[0] in ("segnet_tf", "keras")}
            assert trainer == set(), name
            assert "tensorflow" not in imported or name == "edge_demo.tflite_backend", name
    local = {
        name: {m for m in imported if m in graph and m != name} for name, imported in graph.items()
    }
    for name in local:  # no path leads back to the module it starts from
        seen, todo = set(), list(local[name])
        while todo:
            current = todo.pop()
            assert current != name, f"{name} imports itself back through {sorted(seen)}"
            if current not in seen:
                seen.add(current)
                todo += local[current]
