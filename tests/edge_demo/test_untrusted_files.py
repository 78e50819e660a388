"""Files given to the demo are data: a damaged model is a one-line error, never a crash."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge_demo import DemoError, camera
from edge_demo.runtime import load_model

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "segnet-lite-camvid"


def test_a_truncated_tflite_with_a_valid_header_is_a_clear_error(tmp_path, capsys):
    content = (SHIPPED / "model_int8.tflite").read_bytes()
    model = tmp_path / "model_int8.tflite"
    model.write_bytes(content[: len(content) // 2])  # the TFL3 identifier survives
    shutil.copy(SHIPPED / "labels.json", tmp_path)
    with pytest.raises(DemoError, match="model_int8.tflite: TFLite cannot load it"):
        load_model(model)
    assert camera.main(["--model", str(model), "--source", str(tmp_path), "--headless"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "TFLite cannot load it" in err
