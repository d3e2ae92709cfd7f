"""What the model sees: the tool list, its size, and one full session in both protocol modes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from task_mcp.auth import META_KEY
from task_mcp.server import TaskMcp
from tests.helpers import connect

SNAPSHOT = Path(__file__).parent / "snapshots" / "tools_list.json"


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


@pytest.mark.anyio
async def test_tools_list_matches_the_reviewed_snapshot(app: TaskMcp) -> None:
    async with connect(app) as client:
        tools = await client.list_tools()
    current = json.loads(_wire(tools))
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text()), (
        "tools/list changed: review the difference, then run UPDATE_SNAPSHOTS=1 make test"
    )


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
    }
    for tool in tools:
        assert tool.title and tool.description, tool.name
        assert tool.output_schema is not None, tool.name
        undescribed = [p for p, prop in _params(tool.input_schema, tool.name) if not prop.get("description")]
        assert undescribed == []
        ann = tool.annotations
        assert ann is not None
        assert ann.open_world_hint is False
        assert ann.destructive_hint is (tool.name in {"update_task", "delete_task"}), tool.name
        assert ann.read_only_hint is (tool.name in {"list_tasks", "get_task"}), tool.name
        assert ann.idempotent_hint is (tool.name not in {"create_task", "create_tasks"}), tool.name


@pytest.mark.anyio
async def test_tools_list_fits_the_context_budget(app: TaskMcp) -> None:
    async with connect(app) as client:
        size = len(_wire(await client.list_tools()))
    assert size <= 12_000


@pytest.mark.anyio
async def test_a_page_of_twenty_tasks_fits_the_context_budget(app: TaskMcp, mint: Callable[..., str]) -> None:
    meta = {META_KEY: mint("alice")}
    # Typical agent-made tasks: a 40-50 character title, a due on some, two tags, a description
    # (which a compact page leaves out).
    items = [
        {
            "title": f"Draft section {i} of the quarterly finance report",
            "description": "Numbers from the ledger export; ask Sam for the Q3 comparison. " * 3,
            "priority": ["none", "low", "high"][i % 3],
            "due": "2026-12-01T16:00:00Z" if i % 2 else "2026-12-15",
            "tags": ["work", "finance"],
        }
        for i in range(25)
    ]
    async with connect(app) as client:
        created = await client.call_tool("create_tasks", {"tasks": items}, meta=meta)
        assert not created.is_error
        page = await client.call_tool("list_tasks", {}, meta=meta)
    assert len(page.structured_content["tasks"]) == 20
    size = len(json.dumps(page.structured_content, separators=(",", ":"))) + len(page.content[0].text)
    assert size <= 6_000


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
