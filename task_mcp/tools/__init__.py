"""The tools as the model sees them, one module per toolset (DESIGN §4): `tasks`, `workspaces`,
`history`, `agents`. `base` holds what they share."""

from __future__ import annotations

from typing import Any

from task_mcp.config import Toolset
from task_mcp.tools import agents, history, tasks, workspaces
from task_mcp.tools.base import ToolSpec, invalid_arguments, mcp_tool

TOOLS: tuple[ToolSpec[Any, Any], ...] = (
    tasks.TOOLS + agents.TASK_TOOLS + workspaces.TOOLS + history.TOOLS + agents.AGENT_TOOLS
)


def offered(toolsets: tuple[Toolset, ...], *, read_only: bool) -> tuple[ToolSpec[Any, Any], ...]:
    """The tools a server offers: those of `toolsets`, without the write tools when `read_only`."""
    return tuple(s for s in TOOLS if s.toolset in toolsets and not (read_only and s.write))


__all__ = ["TOOLS", "ToolSpec", "invalid_arguments", "mcp_tool", "offered"]
