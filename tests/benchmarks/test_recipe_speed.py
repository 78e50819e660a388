"""The recipe-speed benchmark runs every row on a tiny model and states its machine."""

from __future__ import annotations

import json

from benchmarks.recipe_speed import ROWS, main, table


def test_every_row_is_timed_against_float32(tmp_path, capsys):
    out = tmp_path / "speed.json"
    main(
        [
            "--model",
            "segnet-basic",
            "--input-size",
            "16x16",
            "--batch-size",
            "2",
            "--rounds",
            "1",
            "--out",
            str(out),
        ]
    )
    result = json.loads(out.read_text())
    assert list(result["rows"]) == list(ROWS)
    rows = result["rows"]
    assert rows["float32"]["speedup_vs_float32"] == 1.0
    for row in rows.values():
        assert row["n"] == 1 and row["median_ms"] > 0
        assert row["speedup_vs_float32"] == rows["float32"]["median_ms"] / row["median_ms"]
    assert "cpu_flags" in result["environment"]
    assert table(result) in capsys.readouterr().out
