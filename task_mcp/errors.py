"""Errors that reach the model.

    TaskMcpError                 every deliberate failure; `code` starts the tool result's text
    ├── UnauthenticatedError     no token, or a token that fails verification
    ├── ForbiddenError           a valid token without the scope or the workspace role the tool needs
    ├── NotFoundError            no such task, workspace or member where the caller may look
    ├── InvalidArgumentError     the arguments break the contract; nothing was changed
    ├── ConflictError            a version, idempotency key or parent state disagrees
    ├── UnavailableError         the database or the JWKS cannot be reached right now
    └── InternalError            an exception nobody expected (logged with its traceback)

The service and the verifier raise these; only `server.error_result` turns them into tool results.
Messages are written for a model: what was wrong, then what to do next. They never contain
SQL, tracebacks, token contents or another user's data.
"""

from __future__ import annotations


class TaskMcpError(Exception):
    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class UnauthenticatedError(TaskMcpError):
    code = "unauthenticated"


class ForbiddenError(TaskMcpError):
    code = "forbidden"


class NotFoundError(TaskMcpError):
    code = "not_found"

    @classmethod
    def task(cls, task_id: int, place: str = "your list", hint: str = "") -> NotFoundError:
        """`place` and `hint` name a shared workspace: "workspace 'acme'", " with workspace 'acme'"."""
        whose = "your" if not hint else "its"
        return cls(f"No task {task_id} in {place}. Call list_tasks{hint} to see {whose} task ids.")


class InvalidArgumentError(TaskMcpError):
    code = "invalid_argument"


class ConflictError(TaskMcpError):
    code = "conflict"


class UnavailableError(TaskMcpError):
    code = "unavailable"


class InternalError(TaskMcpError):
    """Made by `server.py` from an unexpected exception; says whether anything was changed."""

    code = "internal"


class ConfigError(Exception):
    """Bad configuration found at start-up; the CLI prints it as one line and exits 2."""
