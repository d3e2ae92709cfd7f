"""The resources a host can read (DESIGN §13): the task board and `task://{workspace}/{id}`.

- `ui://task-mcp/board.html`: the MCP App page (`io.modelcontextprotocol/ui`) that hosts render
  for a `list_tasks` result; `list_tasks` links it through `_meta.ui.resourceUri`. It ships in the
  package as one self-contained file, read once.
- `task://{workspace}/{id}`: one task as JSON, the shape of `get_task`'s structured result.
  `server.py` reads it through `get_task` itself, so a read is authorized exactly like that call.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from urllib.parse import unquote, urlsplit

from mcp.types import Resource, ResourceTemplate

from task_mcp.errors import InvalidArgumentError
from task_mcp.models import MAX_ID

BOARD_URI = "ui://task-mcp/board.html"
BOARD_MIME = "text/html;profile=mcp-app"
# The tool `_meta` that links the board (the ext-apps spec's `McpUiToolMeta`). Hosts also accept
# the legacy flat key "ui/resourceUri"; it is left out to keep tools/list small (DESIGN §4).
BOARD_TOOL_META = {"ui": {"resourceUri": BOARD_URI}}
# The tools the board calls; a list_tasks result names those offered when some are not (`tools_meta`).
BOARD_TOOLS = ("complete_task", "update_task")
TOOLS_META_KEY = "task-mcp/tools"

TASK_TEMPLATE = "task://{workspace}/{id}"
TASK_MIME = "application/json"

BOARD = Resource(
    name="board",
    title="Task board",
    uri=BOARD_URI,
    description="Tasks grouped as overdue, open and completed, with complete, reopen and priority actions.",
    mime_type=BOARD_MIME,
)
TASK = ResourceTemplate(
    name="task",
    title="A task",
    uri_template=TASK_TEMPLATE,
    description="One task as JSON, as get_task returns it. workspace: 'personal' or an organization's slug.",
    mime_type=TASK_MIME,
)


@cache
def board_html() -> str:
    """The board page, from the package's data (read on first use, then kept)."""
    return (files("task_mcp") / "ui" / "board.html").read_text(encoding="utf-8")


def tools_meta(offered: set[str] | frozenset[str]) -> dict[str, list[str]] | None:
    """The `_meta` a list_tasks result carries so the board hides actions this server does not
    offer; None (nothing added) when it offers them all, which keeps the usual result small."""
    shown = [t for t in BOARD_TOOLS if t in offered]
    return None if len(shown) == len(BOARD_TOOLS) else {TOOLS_META_KEY: shown}


def parse_task_uri(uri: str) -> tuple[str, int]:
    """`task://personal/3` -> ("personal", 3); raises `InvalidArgumentError` for anything else."""
    parts = urlsplit(uri)
    workspace = unquote(parts.netloc)
    number = parts.path.removeprefix("/")
    if (
        parts.scheme != "task"
        or not workspace
        or not number.isascii()
        or not number.isdecimal()
        or len(number) > 20
        or not 1 <= int(number) <= MAX_ID
        or parts.query
        or parts.fragment
    ):
        raise InvalidArgumentError(
            f"{uri!r} is not a resource of this server. Read {BOARD_URI}, or one task as "
            "task://{workspace}/{id}, e.g. task://personal/3 (workspace: 'personal' or an organization's "
            "slug; id: a task id from list_tasks)."
        )
    return workspace, int(number)
