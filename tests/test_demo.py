"""`task-mcp demo` runs end to end with no setup, shows every tool and two errors, and leaves nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TOOLS = (
    "list_tasks", "get_task", "create_task", "create_tasks",
    "update_task", "complete_task", "delete_task", "restore_task",
)  # fmt: skip


def test_demo_runs_every_tool_and_cleans_up(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    # No TASK_MCP_* from the developer's shell: the demo must configure everything itself.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASK_MCP_")} | {"TMPDIR": str(scratch)}
    done = subprocess.run(
        [sys.executable, "-m", "task_mcp", "demo"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "→ tools/list" in out
    for tool in TOOLS:
        assert f"→ {tool} " in out, f"{tool} not called"
    assert "not_found: " in out
    assert "unauthenticated: " in out
    assert "ERROR" not in out and "UNEXPECTED" not in out
    assert "Traceback" not in done.stderr
    assert list(scratch.iterdir()) == []  # the temp dir (database, WAL files) is gone
