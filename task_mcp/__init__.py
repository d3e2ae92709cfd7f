"""task_mcp: an MCP server that gives AI agents task lists (personal and shared), and the library behind it.

The public API is what `__all__` names. `TaskService` holds every rule about tasks and can serve
your own routes too; `Settings`/`load_settings` configure it; the errors are what it raises.
The MCP server (`task_mcp.server.TaskMcp`) and the Streamable HTTP app
(`task_mcp.http.create_http_app`) are imported on first use, so that `import task_mcp` stays light.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("task-mcp")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0"

if TYPE_CHECKING:
    from task_mcp.config import Settings, load_settings
    from task_mcp.errors import (
        ConfigError,
        ConflictError,
        ForbiddenError,
        InternalError,
        InvalidArgumentError,
        NotFoundError,
        TaskMcpError,
        UnauthenticatedError,
        UnavailableError,
    )
    from task_mcp.http import create_http_app
    from task_mcp.server import TaskMcp
    from task_mcp.service import TaskService

__all__ = [
    "ConfigError",
    "ConflictError",
    "ForbiddenError",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "Settings",
    "TaskMcp",
    "TaskMcpError",
    "TaskService",
    "UnauthenticatedError",
    "UnavailableError",
    "__version__",
    "create_http_app",
    "load_settings",
]

_HOMES = {
    "Settings": "task_mcp.config",
    "load_settings": "task_mcp.config",
    "TaskService": "task_mcp.service",
    "TaskMcp": "task_mcp.server",
    "create_http_app": "task_mcp.http",
    **dict.fromkeys(
        [
            "ConfigError",
            "ConflictError",
            "ForbiddenError",
            "InternalError",
            "InvalidArgumentError",
            "NotFoundError",
            "TaskMcpError",
            "UnauthenticatedError",
            "UnavailableError",
        ],
        "task_mcp.errors",
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'task_mcp' has no attribute {name!r}")
    return getattr(import_module(home), name)
