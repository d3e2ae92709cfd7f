"""`task-mcp demo`: one scripted session against a real `task-mcp serve`, with nothing to set up.

It plays Better Auth's part itself: a throwaway Ed25519 key, published as a JWKS at
`http://127.0.0.1:<port>/api/auth/jwks`, and a 15-minute JWT for a demo user signed like the JWT
plugin signs it. Then it starts `task-mcp serve` as a stdio subprocess, configured the way an
`mcp.json` entry would configure it (TASK_MCP_BETTER_AUTH_URL + TASK_MCP_TOKEN), and calls every
tool through the MCP SDK's client, printing what an agent would see. The temp directory, the
JWKS server and the subprocess are gone when it returns, whatever happens.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, cast

import anyio
from mcp import Client, StdioServerParameters
from mcp.types import Implementation, RequestParamsMeta

from task_mcp.credentials import META_KEY
from task_mcp.testing import JwksServer

DEMO_USER = "demo-user"


class Transcript:
    """Runs each call, prints `→ tool {args}` and the answer's text, and counts surprises."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.failures = 0

    async def call(self, tool: str, args: dict[str, Any], *, expect: str | None = None,
                   meta: dict[str, Any] | None = None, note: str = "") -> dict[str, Any]:  # fmt: skip
        """Call `tool`; `expect` names the error code the call should fail with, if any."""
        print(f"\n→ {tool} {json.dumps(args, separators=(',', ':'))}{note}")
        # RequestParamsMeta is an open TypedDict (extra_items) that mypy cannot match a str key against.
        result = await self.client.call_tool(tool, args, meta=cast("RequestParamsMeta | None", meta))
        text = "\n".join(c.text for c in result.content if c.type == "text")
        ok = result.is_error and text.startswith(f"{expect}:") if expect else not result.is_error
        self.failures += not ok
        if result.is_error:
            text = f"✗ {'expected error' if ok else 'ERROR'}: {text}"
        elif expect:
            text = f"✗ UNEXPECTED SUCCESS (wanted {expect}): {text}"
        print("\n".join(f"    {line}" for line in text.splitlines()))
        return result.structured_content or {}


async def session(base_url: str, token: str, expired_token: str, tmp: Path) -> int:
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "task_mcp", "serve"],
        # The SDK passes only HOME, LOGNAME, PATH, SHELL, TERM and USER on; the rest goes here.
        env={
            "TASK_MCP_DATABASE_URL": f"sqlite:///{tmp / 'demo.db'}",
            "TASK_MCP_BETTER_AUTH_URL": base_url,  # JWKS at <base>/api/auth/jwks, iss = aud = <base>
            "TASK_MCP_TOKEN": token,  # the launch token: used when a request brings none
            "TASK_MCP_LOG_LEVEL": "WARNING",
        },
    )
    async with Client(server, client_info=Implementation(name="demo-agent", version="1")) as client:
        print("\n→ tools/list")
        listing = await client.list_tools()
        size = len(listing.model_dump_json(by_alias=True, exclude_none=True).encode())
        print(f"    {len(listing.tools)} tools, {size} bytes: {', '.join(t.name for t in listing.tools)}")

        t = Transcript(client)
        due = (dt.date.today() + dt.timedelta(days=14)).isoformat()
        plan = await t.call("create_task", {"title": "Plan the team offsite", "priority": "high",
                                            "due": due, "tags": ["work", "Planning"]})  # fmt: skip
        parent = plan.get("task", {}).get("id", 1)
        await t.call("create_task", {"title": "Book a venue", "parent_id": parent})
        errands = [{"title": "Buy milk", "tags": ["home"]}, {"title": "Call the dentist", "priority": "medium"}]
        batch = await t.call("create_tasks", {"tasks": errands})
        milk, dentist = (task["id"] for task in batch.get("tasks", [{"id": 3}, {"id": 4}]))
        await t.call("list_tasks", {})
        renamed = await t.call("update_task", {"task_id": milk, "title": "Buy oat milk", "expected_version": 1})
        await t.call("complete_task", {"task_id": dentist})
        await t.call("delete_task", {"task_id": parent}, note="   (its subtask goes too)")
        await t.call("list_tasks", {"status": "all"})
        await t.call("restore_task", {"task_id": parent})
        await t.call("list_tasks", {})
        print("\nEvery change is in the journal, and any change can be undone:")
        await t.call("list_changes", {"limit": 4})
        await t.call("undo_change", {"change_id": renamed.get("change_id") or 4}, note="   (the rename)")
        await t.call("get_task", {"task_id": milk})

        print("\nA repeating task moves to its next occurrence when completed:")
        monday = dt.date.today() + dt.timedelta(days=-dt.date.today().weekday() % 7 or 7)
        plants = await t.call("create_task", {"title": "Water the plants", "due": monday.isoformat(),
                                              "repeat": "every monday"})  # fmt: skip
        await t.call("complete_task", {"task_id": plants.get("task", {}).get("id", 5)})

        print("\nErrors come back as tool results whose text starts with a code:")
        await t.call("get_task", {"task_id": 999}, expect="not_found")
        await t.call("list_tasks", {}, expect="unauthenticated", meta={META_KEY: f"Bearer {expired_token}"},
                     note=f'   with _meta["{META_KEY}"] = "Bearer <an expired JWT>"')  # fmt: skip
        return t.failures


def run_demo() -> int:
    """Run the scripted session; 0 if every step behaved as expected, else 1."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")  # a non-UTF-8 terminal gets "?" for "→", not a crash
    with tempfile.TemporaryDirectory(prefix="task-mcp-demo-") as tmp, JwksServer() as better_auth:
        token = better_auth.mint(DEMO_USER)
        expired = better_auth.mint(DEMO_USER, lifetime=-3600)
        base = better_auth.base_url
        print("task-mcp demo: a throwaway Better Auth stand-in, token and database")
        print(f"  JWKS    {better_auth.url}  (one Ed25519 key, kid {better_auth.key().kid})")
        print(f"  token   a 15-minute EdDSA JWT for user {DEMO_USER}, passed as TASK_MCP_TOKEN")
        print(f"  server  {Path(sys.executable).name} -m task_mcp serve  (stdio), database in {tmp}")
        try:
            failures = anyio.run(session, base, token, expired, Path(tmp))
        except Exception as exc:  # the server did not start or the connection broke
            while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
                exc = exc.exceptions[0]  # anyio wraps the cause in task-group layers
            print(f"\ndemo failed: {type(exc).__name__}: {exc} (the server's own messages are above)", file=sys.stderr)
            return 1
    print(f"\n{'done: every step behaved as expected' if not failures else f'{failures} step(s) went wrong'}")
    return 0 if not failures else 1
