"""The task board (task_mcp/ui/board.html) in headless Chromium, as an MCP host shows it.

tests/board/run.mjs loads the board under the ext-apps host bridge (AppBridge) and reaches a real
`task-mcp serve --transport http` (tests/board/serve.py) through the MCP TypeScript SDK; it seeds
tasks, clicks through the board and writes what the board showed as JSON, checked here.

Needs Debian's chromium (`/usr/bin/chromium`, or TASK_MCP_E2E_CHROMIUM) and tests/board/node_modules
(`make test` installs them; .ci/run installs chromium). Without the browser the tests skip, which
fails CI; without the node modules they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.board.serve import running_server

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "tests" / "board"
CHROMIUM = os.environ.get("TASK_MCP_E2E_CHROMIUM", "/usr/bin/chromium")
TASK_MCP = Path(sys.executable).with_name("task-mcp")

# What run.mjs seeds (tasks 1-5), by the group the board must show each in before any click.
SEEDED = {
    "overdue": ["Renew passport"],
    "open": [
        "Write the quarterly report",
        "Book flights for the conference once the report is approved",
        "Call the plumber about the kitchen tap",
    ],
    "completed": ["Pay the electricity bill"],
}
PLUMBER = 4  # the task run.mjs completes through the board


@pytest.fixture
def board_server() -> Iterator[dict[str, str]]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (CI installs it, and fails on this skip)")
    assert shutil.which("node"), "node is not on PATH: the board harness runs on Node 20+"
    assert (HARNESS / "node_modules" / ".installed").exists(), (
        "tests/board/node_modules is missing: run `make test`, which installs it with npm ci"
    )
    with running_server(TASK_MCP) as e2e:
        yield e2e


def run_board(server: dict[str, str], tmp_path: Path, **options: str) -> dict[str, Any]:
    """Run tests/board/run.mjs against the server with TASK_MCP_E2E_<OPTION> variables; its report."""
    report = tmp_path / "report.json"
    env = {**os.environ, **server, "TASK_MCP_E2E_REPORT": str(report), "TASK_MCP_E2E_CHROMIUM": CHROMIUM}
    env.update({f"TASK_MCP_E2E_{key.upper()}": value for key, value in options.items()})
    done = subprocess.run(
        ["node", str(HARNESS / "run.mjs")], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"run.mjs failed:\n{done.stdout}\n{done.stderr}"
    result: dict[str, Any] = json.loads(report.read_text())
    return result


def titles(observed: dict[str, Any]) -> dict[str, list[str]]:
    return {group: sorted(row["title"] for row in rows) for group, rows in observed["groups"].items()}


def rgb(css: str) -> tuple[float, ...]:
    return tuple(float(part) for part in re.findall(r"[\d.]+", css)[:3])


def luminance(css: str) -> float:
    """WCAG relative luminance of a computed `rgb(...)` color: 0 black, 1 white."""
    channels = [c / 255 for c in rgb(css)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(foreground: str, background: str) -> float:
    """WCAG contrast ratio of two computed colors (at least 4.5 for body text, 7 is AAA)."""
    lighter, darker = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def assert_fits(report: dict[str, Any]) -> None:
    for width in ("320", "1280"):
        layout = report["layout"][width]
        assert layout["overflowing"] == [], f"at {width} px these stick out: {layout['overflowing']}"
        assert layout["scrollWidth"] <= int(width)


def test_board_shows_the_list_and_completing_a_task_shows_the_servers_answer(
    board_server: dict[str, str], tmp_path: Path
) -> None:
    report = run_board(board_server, tmp_path)

    assert titles(report["initial"]) == {group: sorted(names) for group, names in SEEDED.items()}
    assert report["error"] is None
    completed = {row["id"]: row["status"] for row in report["final"]["groups"]["completed"]}
    assert completed.get(PLUMBER) == "completed"
    assert report["server"][str(PLUMBER)]["status"] == "completed"
    # The task reopened through the board moved to the open tasks (it is overdue: due yesterday).
    assert "Pay the electricity bill" in [row["title"] for row in report["final"]["groups"]["overdue"]]
    assert_fits(report)


def test_board_shows_an_unauthenticated_answer_as_text(board_server: dict[str, str], tmp_path: Path) -> None:
    # The click goes through a stdio server launched with a token signed by an unknown key.
    report = run_board(board_server, tmp_path, expect_error="unauthenticated:", bad_transport="stdio")

    assert report["error"].startswith(f"Could not complete #{PLUMBER}")
    assert "unauthenticated:" in report["error"]
    assert report["final"]["error"] == report["error"]
    open_rows = {row["id"]: row["status"] for row in report["final"]["groups"]["open"]}
    assert open_rows.get(PLUMBER) == "open"


def test_board_in_dark_mode_is_readable_and_fits_a_narrow_column(board_server: dict[str, str], tmp_path: Path) -> None:
    report = run_board(board_server, tmp_path, theme="dark", actions="0")

    colors = report["final"]["colors"]
    body = colors["body"]
    assert luminance(body["background"]) < 0.05, f"the dark board has a light background: {body}"
    assert contrast(body["color"], body["background"]) >= 7
    assert contrast(colors["title"]["color"], body["background"]) >= 7
    assert contrast(colors["chip"]["color"], colors["chip"]["background"]) >= 4.5
    assert_fits(report)
