"""Progress bars: drawn on a terminal only, never under --quiet, the items passed through."""

from __future__ import annotations

import io
import sys

from segnet_tf.progress import bars_shown, progress, quiet


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_is_drawn_on_a_terminal_only(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    items = [1, 2, 3]
    assert progress(items, "evaluate") is items and not bars_shown()  # a pipe, a log, CI
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert bars_shown()
    assert list(progress(iter(items), "evaluate val", total=3, unit="batch")) == items
    assert "evaluate val: 0%| | 0/3 [00:00" in " ".join(terminal.getvalue().split())


def test_quiet_turns_bars_off_for_its_block_only(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    items = [1, 2]
    with quiet():
        assert not bars_shown() and progress(items, "predict") is items
    assert bars_shown()


def test_the_cli_takes_quiet_before_the_command():
    from click.testing import CliRunner

    from segnet_tf.cli import cli

    result = CliRunner().invoke(cli, ["--quiet", "models", "--help"])
    assert result.exit_code == 0, result.output
    assert "--quiet" in CliRunner().invoke(cli, ["--help"]).output
