"""Every rule about tasks, as a library: `TaskService` (the rules of each tool, `tasks.py`), over
the statements of `store.py`; `TaskPage` (one `list_tasks` answer, `listing.py`); workspaces,
roles and known members (`workspaces.py`: `Caller`, `Workspace`, `WorkspaceInfo`); idempotency
keys and housekeeping. Nothing here knows about MCP."""

from task_mcp.service.housekeeping import IDEMPOTENCY_TTL, PURGE_EVERY_SECONDS
from task_mcp.service.listing import TaskPage
from task_mcp.service.store import PURGE_BATCH
from task_mcp.service.tasks import TaskService, utcnow
from task_mcp.service.workspaces import Caller, Workspace, WorkspaceInfo

__all__ = [
    "IDEMPOTENCY_TTL",
    "PURGE_BATCH",
    "PURGE_EVERY_SECONDS",
    "Caller",
    "TaskPage",
    "TaskService",
    "Workspace",
    "WorkspaceInfo",
    "utcnow",
]
