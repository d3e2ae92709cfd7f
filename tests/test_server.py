"""What the model sees: the tool list, its size, and one full session in both protocol modes."""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from task_mcp.config import Settings
from task_mcp.credentials import META_KEY
from task_mcp.server import TaskMcp
from tests.helpers import connect

SNAPSHOTS = Path(__file__).parent / "snapshots" / "tools"
SELF_EXPLANATORY = {"task_id", "title", "description", "priority"}


def _wire(result: Any) -> str:
    return result.model_dump_json(by_alias=True, exclude_none=True)


def _params(schema: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, prop in schema.get("properties", {}).items():
        found.append((f"{path}.{name}", prop))
        items = prop.get("items")
        if isinstance(items, dict) and "properties" in items:
            found += _params(items, f"{path}.{name}[]")
    return found


def snapshot_problem(name: str, definition: dict[str, Any], directory: Path, *, update: bool) -> str | None:
    """What is wrong with tool `name`'s snapshot, or None; with `update` it rewrites a stale one."""
    current = json.dumps(definition, indent=1, sort_keys=True) + "\n"
    path = directory / f"{name}.json"
    stored = path.read_text() if path.exists() else None
    if stored == current:
        return None
    if update:
        path.write_text(current)
        return f"{name}: snapshot rewritten, review it: git diff {path}"
    if stored is None:
        return f"{name}: no snapshot at {path}. Create it with UPDATE_SNAPSHOTS=1 make test, then review it."
    diff = "".join(difflib.unified_diff(stored.splitlines(True), current.splitlines(True), f"{name} (snapshot)", name))
    return f"{name}: what the model sees changed; if intended, run UPDATE_SNAPSHOTS=1 make test and review it\n{diff}"


@pytest.fixture
def offline_app(tmp_path: Path) -> TaskMcp:
    """A server whose tool table can be read without a database or a JWKS being reached."""
    settings = Settings(
        _env_file=None, database_url=f"sqlite:///{tmp_path / 'unused.db'}", better_auth_url="http://127.0.0.1:9"
    )
    return TaskMcp(settings)


@pytest.mark.anyio
async def test_each_tool_definition_matches_its_reviewed_snapshot(offline_app: TaskMcp) -> None:
    async with connect(offline_app) as client:
        tools = (await client.list_tools()).tools
    update = os.environ.get("UPDATE_SNAPSHOTS") == "1"
    problems = [snapshot_problem(t.name, json.loads(_wire(t)), SNAPSHOTS, update=update) for t in tools]
    stale = sorted({p.stem for p in SNAPSHOTS.glob("*.json")} - {t.name for t in tools})
    assert [p for p in problems if p] == [] and stale == [], stale


def test_a_missing_snapshot_fails_and_an_updated_one_fails_until_reviewed(tmp_path: Path) -> None:
    definition = {"name": "get_task", "description": "Get one task."}
    missing = snapshot_problem("get_task", definition, tmp_path, update=False)
    assert missing is not None and "no snapshot" in missing and "UPDATE_SNAPSHOTS=1" in missing
    assert not (tmp_path / "get_task.json").exists()  # never written without being asked
    written = snapshot_problem("get_task", definition, tmp_path, update=True)
    assert written is not None and "rewritten, review it" in written
    assert snapshot_problem("get_task", definition, tmp_path, update=False) is None
    changed = snapshot_problem("get_task", {**definition, "description": "Other."}, tmp_path, update=False)
    assert changed is not None and changed.startswith("get_task: ") and '- "description": "Get one task."' in changed


@pytest.mark.anyio
async def test_every_tool_and_parameter_is_described_with_truthful_annotations(app: TaskMcp) -> None:
    async with connect(app) as client:
        tools = (await client.list_tools()).tools
    assert {t.name for t in tools} == {
        "list_tasks",
        "get_task",
        "create_task",
        "create_tasks",
        "update_task",
        "complete_task",
        "delete_task",
        "restore_task",
        "list_workspaces",
        "list_changes",
        "undo_change",
        "update_tasks",
        "add_note",
        "claim_task",
        "release_task",
    }
    for tool in tools:
        assert tool.title and tool.description, tool.name
        assert tool.output_schema is not None, tool.name
        # A parameter whose name says what it is goes without a description (DESIGN §4's budget);
        # every other one is described, and so are the items of create_tasks and update_tasks.
        undescribed = [
            p
            for p, prop in _params(tool.input_schema, tool.name)
            if not prop.get("description") and p.rsplit(".", 1)[-1] not in SELF_EXPLANATORY
        ]
        assert undescribed == []
        ann = tool.annotations
        assert ann is not None
        assert ann.open_world_hint is False
        destructive = {"update_task", "update_tasks", "delete_task", "undo_change"}
        assert ann.destructive_hint is (tool.name in destructive), tool.name
        reads = {"list_tasks", "get_task", "list_workspaces", "list_changes"}
        assert ann.read_only_hint is (tool.name in reads), tool.name
        repeats_act_again = {"create_task", "create_tasks", "complete_task", "add_note", "claim_task", "release_task"}
        assert ann.idempotent_hint is (tool.name not in repeats_act_again), tool.name


async def _tools_list_bytes(app: TaskMcp) -> int:
    async with connect(app) as client:
        return len(_wire(await client.list_tools()).encode())


@pytest.mark.anyio
@pytest.mark.parametrize(("toolsets", "budget"), [("tasks", 12_000), (None, 18_000)])
async def test_tools_list_fits_the_context_budget_per_toolset_and_all_together(
    make_app: Callable[..., TaskMcp], toolsets: str | None, budget: int
) -> None:
    app = make_app(toolsets=toolsets) if toolsets else make_app()
    assert await _tools_list_bytes(app) <= budget


@pytest.mark.anyio
async def test_a_page_of_twenty_tasks_fits_the_context_budget_one_line_per_task(
    app: TaskMcp, mint: Callable[..., str]
) -> None:
    meta = {META_KEY: mint("alice")}
    # DESIGN's fixture: titles of 60 characters, 3 tags, a due, a priority, a description (which a
    # compact page leaves out); more tasks than a page, so the answer carries a cursor too.
    items = [
        {
            "title": f"Draft section {i:02d} of the quarterly finance report for reviews",
            "description": "Numbers from the ledger export; ask Sam for the Q3 comparison. " * 3,
            "priority": ["low", "high", "urgent"][i % 3],
            "due": "2026-12-01T16:00:00Z" if i % 2 else "2026-12-15",
            "tags": ["work", "finance", "planning"],
        }
        for i in range(25)
    ]
    assert {len(item["title"]) for item in items} == {60}
    async with connect(app) as client:
        created = await client.call_tool("create_tasks", {"tasks": items}, meta=meta)
        assert not created.is_error
        page = await client.call_tool("list_tasks", {}, meta=meta)
    tasks = page.structured_content["tasks"]
    text = page.content[0].text
    assert len(tasks) == 20 and page.structured_content["next_cursor"]
    size = len(json.dumps(page.structured_content, separators=(",", ":")).encode()) + len(text.encode())
    assert size <= 6_000
    lines = text.splitlines()
    task_lines = [line for line in lines if line.startswith("#")]
    assert [line.split()[0] for line in task_lines] == [f"#{t['id']}" for t in tasks]  # one line per task
    assert len(lines) == len(task_lines) + 2  # plus "20 of 25 tasks" and the cursor
    assert all(item["title"] in line for item, line in zip(tasks, task_lines, strict=True))


@pytest.mark.anyio
async def test_compact_list_items_leave_out_timestamps_nulls_and_empty_lists(
    app: TaskMcp, mint: Callable[..., str]
) -> None:
    meta = {"task-mcp/authorization": mint("alice")}
    async with connect(app) as client:
        await client.call_tool("create_task", {"title": "Bare", "description": "hidden in lists"}, meta=meta)
        await client.call_tool("create_task", {"title": "Tagged", "tags": ["home"], "due": "2026-12-01"}, meta=meta)
        page = await client.call_tool("list_tasks", {}, meta=meta)
        full = await client.call_tool("list_tasks", {"include_description": True}, meta=meta)
    tagged, bare = page.structured_content["tasks"]
    assert bare == {"id": 1, "title": "Bare", "status": "open", "priority": "none", "version": 1}
    assert tagged == {"id": 2, "title": "Tagged", "status": "open", "priority": "none", "due": "2026-12-01",
                      "tags": ["home"], "version": 1}  # fmt: skip
    assert full.structured_content["tasks"][1]["tags"] == [] and "created_at" in full.structured_content["tasks"][1]


@pytest.mark.anyio
async def test_a_write_whose_answer_fails_after_its_commit_does_not_say_nothing_was_changed(
    app: TaskMcp, mint: Callable[..., str]
) -> None:
    def broken(args: Any, answer: Any) -> tuple[dict[str, Any], str]:
        raise RuntimeError("rendering failed after the commit")

    app.specs["create_task"] = dataclasses.replace(app.specs["create_task"], render=broken)
    meta = {"task-mcp/authorization": mint("alice")}
    async with connect(app) as client:
        result = await client.call_tool("create_task", {"title": "Saved anyway"}, meta=meta)
        listed = await client.call_tool("list_tasks", {}, meta=meta)
    text = result.content[0].text
    assert result.is_error and text.startswith("internal: ")
    assert "nothing was changed" not in text and "Do not repeat create_task" in text
    assert [t["title"] for t in listed.structured_content["tasks"]] == ["Saved anyway"]


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_whole_session_works_in_both_protocol_modes(app: TaskMcp, mint: Callable[..., str], mode: str) -> None:
    meta = {META_KEY: f"Bearer {mint('alice')}"}
    async with connect(app, mode=mode) as client:
        created = await client.call_tool("create_task", {"title": "Water the plants"}, meta=meta)
        task_id = created.structured_content["task"]["id"]
        await client.call_tool("update_task", {"task_id": task_id, "priority": "high"}, meta=meta)
        done = await client.call_tool("complete_task", {"task_id": task_id}, meta=meta)
        assert done.structured_content["task"]["status"] == "completed"
        await client.call_tool("delete_task", {"task_id": task_id}, meta=meta)
        gone = await client.call_tool("get_task", {"task_id": task_id}, meta=meta)
        assert gone.is_error and gone.content[0].text.startswith("not_found:")
        restored = await client.call_tool("restore_task", {"task_id": task_id}, meta=meta)
        listed = await client.call_tool("list_tasks", {"status": "all"}, meta=meta)
    assert restored.structured_content["task"]["priority"] == "high"
    assert [t["id"] for t in listed.structured_content["tasks"]] == [task_id]
    assert "Water the plants" in listed.content[0].text
