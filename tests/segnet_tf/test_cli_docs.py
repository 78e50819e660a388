"""docs/cli.md and the command line agree on every option and its default: the defaults are read
from the click commands themselves, so a changed default or a new option fails here until the
page says it."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from segnet_tf.cli import cli

DOCS = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
CONTEXT = click.Context(cli)


def commands(command: click.Command = cli, path: tuple[str, ...] = ()):
    yield path, command
    if isinstance(command, click.Group):
        for name in command.list_commands(CONTEXT):
            yield from commands(command.get_command(CONTEXT, name), (*path, name))


def documented_options(command: click.Command) -> list[click.Option]:
    return [
        p
        for p in command.params
        if isinstance(p, click.Option) and not p.hidden and p.name not in ("help", "version")
    ]


def default_cell(option: click.Option) -> str:
    """How the page writes an option's default (see its first paragraph)."""
    value = option.get_default(CONTEXT, call=False)
    if type(value).__name__ == "Sentinel":  # click's "not given"
        value = None
    if option.required:
        return "required"
    if option.is_flag and not option.secondary_opts:
        return "on" if value else "off"
    if option.is_flag:
        return (
            "—" if value is None else f"`{option.opts[0] if value else option.secondary_opts[0]}`"
        )
    if value is None or value == ():
        return "—"
    return "`" + ("x".join(map(str, value)) if isinstance(value, tuple) else str(value)) + "`"


def docs_tables() -> dict[str, dict[str, str]]:
    """Section (the command, e.g. ``data split``; ``""`` for the group) -> option -> cell."""
    tables: dict[str, dict[str, str]] = {}
    section = None
    for line in DOCS.read_text().splitlines():
        heading = re.match(r"### `segnet-tf ?([^`]*)`", line)
        if heading:
            section = heading.group(1)
            tables[section] = {}
        elif section is not None and line.startswith("| `-"):
            names, default = (c.strip() for c in line.strip("|").split("|")[:2])
            tables[section][names] = default
    return tables


@pytest.mark.parametrize(
    ("path", "command"),
    [(p, c) for p, c in commands() if documented_options(c)],
    ids=lambda v: " ".join(v) or "segnet-tf" if isinstance(v, tuple) else "",
)
def test_the_docs_table_gives_every_option_its_cli_default(path, command):
    table = docs_tables().get(" ".join(path))
    assert table is not None, f"docs/cli.md has no section for segnet-tf {' '.join(path)}"
    expected = {
        ", ".join(f"`{o}`" for o in (*p.opts, *p.secondary_opts)): default_cell(p)
        for p in documented_options(command)
    }
    assert table == expected


def test_the_defaults_the_issue_found_disagreeing_now_agree():
    tables = docs_tables()
    assert tables["train"]["`--class-weights`"] == "`sqrt-median`"
    assert tables["data split"].keys() >= {"`--data`", "`--out`"}  # no --by-drive to give
    for verb in ("evaluate", "predict"):
        assert "`--mc-samples`, `--samples`" in tables[verb]
    assert "`--mc-samples`" in tables["export"]
