"""The README cannot drift: its configuration table is `Settings`, its command list is the CLI."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from pydantic_core import PydanticUndefined

from task_mcp.cli import _parser
from task_mcp.config import Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def section(title: str) -> str:
    """The README's text under `## title`, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README.read_text(encoding="utf-8"), re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def configuration_rows() -> dict[str, str]:
    """`TASK_MCP_X` -> the default cell, for every row of the configuration table."""
    found: dict[str, str] = {}
    for line in section("Configuration").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"`TASK_MCP_[A-Z0-9_]+`", cells[0]):
            name = cells[0].strip("`")
            assert name not in found, f"{name} has two rows"
            found[name] = cells[1]
    return found


def documented_default(value: object) -> str | None:
    """How a literal default is written in the table, or None for "nothing" (—)."""
    if value is None or value == ():
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(str(part) for part in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_the_configuration_table_has_one_row_per_setting_and_no_other():
    documented = set(configuration_rows())
    expected = {f"TASK_MCP_{name.upper()}" for name in Settings.model_fields}
    assert sorted(expected - documented) == [], "settings missing from README.md's configuration table"
    assert sorted(documented - expected) == [], "README.md documents variables that Settings does not read"


def test_the_configuration_table_states_each_literal_default():
    rows = configuration_rows()
    wrong = []
    for name, field in Settings.model_fields.items():
        cell = rows.get(f"TASK_MCP_{name.upper()}")
        if cell is None:
            continue  # reported by the test above
        assert field.default is not PydanticUndefined, f"{name} has no default: the table cannot state one"
        default = documented_default(field.default)
        literal = re.fullmatch(r"`([^`{}]*)`", cell)
        if default is None:
            # Nothing, or something derived at start-up ("SQLite file in ...", "localhost"): not a literal.
            ok = literal is None
        else:
            ok = literal is not None and literal.group(1).replace(", ", ",") == default
        if not ok:
            wrong.append(f"TASK_MCP_{name.upper()}: README says {cell!r}, Settings says {default!r}")
    assert wrong == []


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = _parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return dict(actions[0].choices)


def test_the_command_list_names_every_subcommand_and_no_other():
    listed = section("Commands")
    documented = set(re.findall(r"^task-mcp ([a-z][a-z-]*)", listed, re.M))
    assert documented == set(subcommands())
    assert re.search(r"^python -m task_mcp\b", listed, re.M), "the list says that `python -m task_mcp` is the same"


def test_every_flag_in_the_command_list_exists():
    commands = subcommands()
    unknown = []
    for command, rest in re.findall(r"^task-mcp ([a-z][a-z-]*)(.*)$", section("Commands"), re.M):
        if command not in commands:
            continue  # reported by the test above
        flags = {option for action in commands[command]._actions for option in action.option_strings}
        used = re.findall(r"(--[a-z][a-z-]*)", rest.split("#")[0])
        unknown += [f"task-mcp {command} {flag}" for flag in used if flag not in flags]
    assert unknown == []
