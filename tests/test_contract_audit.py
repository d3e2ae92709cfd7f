"""Contract checks found by reading DESIGN line by line and driving the server as a black box,
through the SDK's in-memory `mcp.Client` on SQLite and PostgreSQL: each test names the sentence
it holds the server to.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from mcp import MCPError

from task_mcp.server import TaskMcp
from tests.helpers import Caller, connect

pytestmark = pytest.mark.anyio


async def test_repeat_on_a_task_that_a_deleted_task_waits_for_says_how_to_get_there(
    app: TaskMcp, mint: Callable[..., str]
) -> None:
    # §10: "setting `repeat` on a task that blocks others is `invalid_argument`". The task in the
    # trash still stores its link (restoring it brings the link back), so the refusal stands, but the
    # advice must be one the caller can follow: update_task cannot reach a deleted task.
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        blocker = await alice.add("Blocker", due="2026-12-01")
        waiting = await alice.add("Waits", blocked_by=[blocker["id"]])
        await alice.delete(waiting["id"])

        message = await alice.fails("update_task", "invalid_argument", task_id=blocker["id"], repeat="weekly")
        assert f"restore_task with task_id {waiting['id']}" in message
        assert "deleted" in message
        assert (await alice.task(blocker["id"]))["version"] == 1  # nothing changed

        # Following the advice works.
        await alice.ok("restore_task", task_id=waiting["id"])
        await alice.update(waiting["id"], clear=["blocked_by"])
        assert (await alice.update(blocker["id"], repeat="weekly"))["repeat"] == "FREQ=WEEKLY"


async def test_reading_the_board_where_list_tasks_is_not_offered_does_not_point_back_at_the_board(
    make_app: Callable[..., TaskMcp],
) -> None:
    # §13: "Prompts and the board follow TASK_MCP_READ_ONLY and TASK_MCP_TOOLSETS".
    async with connect(make_app(toolsets="history")) as client:
        with pytest.raises(MCPError) as failed:
            await client.read_resource("ui://task-mcp/board.html")
        message = failed.value.message
        assert message.startswith("invalid_argument: ")
        assert "not offered" in message and "resources/list" in message
        assert "Read ui://task-mcp/board.html" not in message


@pytest.mark.parametrize(
    "updates",
    [
        # Link to a task that stops repeating later in the same call.
        [{"task_id": 2, "blocked_by": [1]}, {"task_id": 1, "clear": ["repeat"]}],
        [{"task_id": 1, "clear": ["repeat"]}, {"task_id": 2, "blocked_by": [1]}],
    ],
)
async def test_update_tasks_checks_repeating_blockers_on_the_final_state_whatever_the_order(
    app: TaskMcp, mint: Callable[..., str], updates: list[dict[str, object]]
) -> None:
    # §10: update_tasks is "All or nothing, one change; rules are checked on the final state".
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        await alice.add("Standup", due="2026-12-01", repeat="daily")
        await alice.add("Write report")

        dry = await alice.ok("update_tasks", updates=updates, dry_run=True)
        done = await alice.ok("update_tasks", updates=updates)
        assert dry["tasks"] == done["tasks"]
        assert (await alice.task(2))["blocked_by"] == [1] and (await alice.task(1)).get("repeat") is None

        # And back: task 1 starts repeating in the same call that unlinks it, in either order.
        for back in (
            [{"task_id": 1, "repeat": "daily"}, {"task_id": 2, "clear": ["blocked_by"]}],
            [{"task_id": 2, "blocked_by": [1]}, {"task_id": 1, "clear": ["repeat"]}],
            [{"task_id": 2, "clear": ["blocked_by"]}, {"task_id": 1, "repeat": "weekly"}],
        ):
            await alice.ok("update_tasks", updates=back)
        assert (await alice.task(1))["repeat"] == "FREQ=WEEKLY" and (await alice.task(2))["blocked_by"] == []


async def test_update_tasks_still_refuses_a_repeating_blocker_in_the_final_state(
    app: TaskMcp, mint: Callable[..., str]
) -> None:
    async with connect(app) as client:
        alice = Caller(client, mint("alice"))
        await alice.add("Standup", due="2026-12-01")
        await alice.add("Write report")
        for updates in (
            [{"task_id": 2, "blocked_by": [1]}, {"task_id": 1, "repeat": "daily"}],
            [{"task_id": 1, "repeat": "daily"}, {"task_id": 2, "blocked_by": [1]}],
        ):
            message = await alice.fails("update_tasks", "invalid_argument", updates=updates)
            # Either item may be named: each is half of the link that breaks the rule.
            assert message.startswith("invalid_argument: updates[") and "a repeating task cannot block" in message
        assert (await alice.task(1))["version"] == 1 and (await alice.task(2))["version"] == 1
