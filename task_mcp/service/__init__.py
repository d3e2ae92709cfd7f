"""Every rule about tasks, as a library: `TaskService` (the rules of each tool, `tasks.py`), over
the statements of `store.py`, and `TaskPage` (one `list_tasks` answer, `listing.py`). Nothing here
knows about MCP."""

from task_mcp.service.listing import TaskPage
from task_mcp.service.store import PURGE_BATCH
from task_mcp.service.tasks import IDEMPOTENCY_TTL, PURGE_EVERY_SECONDS, TaskService, utcnow

__all__ = ["IDEMPOTENCY_TTL", "PURGE_BATCH", "PURGE_EVERY_SECONDS", "TaskPage", "TaskService", "utcnow"]
