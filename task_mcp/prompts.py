"""The prompts a host offers the person (DESIGN §13): `plan_my_day`, `weekly_review`, `triage`.

Each prompt is one user message that tells the model which tools to call and how to present the
answer; it holds no data, so getting one needs no token. A prompt names the tools it needs: a
server that does not offer one of them (`TASK_MCP_READ_ONLY`, `TASK_MCP_TOOLSETS`) does not list
the prompt, and getting it anyway is an error. `server.py` serves the table.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from mcp.types import GetPromptResult, Prompt, PromptArgument, PromptMessage, TextContent
from pydantic import BaseModel, ConfigDict, ValidationError

from task_mcp.errors import ForbiddenError, InvalidArgumentError
from task_mcp.models import Timezone
from task_mcp.tools.base import WorkspaceName

WORKSPACE = PromptArgument(name="workspace", description="'personal' (default) or an organization's slug.")
TIMEZONE = PromptArgument(name="timezone", description="IANA time zone, e.g. Europe/Paris (default UTC).")
HANDS_OFF = "Do not change any task unless I ask."


class PromptArgs(BaseModel):
    """Every prompt's arguments, all optional; a prompt reads the ones it lists."""

    model_config = ConfigDict(extra="forbid")

    workspace: WorkspaceName = "personal"
    timezone: Timezone = "UTC"


@dataclass(frozen=True)
class PromptSpec:
    name: str
    title: str
    description: str
    arguments: tuple[PromptArgument, ...]
    needs: tuple[str, ...]  # the tools its message tells the model to call
    message: Callable[[PromptArgs], str]


def _plan_my_day(a: PromptArgs) -> str:
    where = f"workspace: '{a.workspace}', timezone: '{a.timezone}'"
    return (
        f"Plan my day from my task list (pass {where} to every list_tasks call).\n"
        "1. list_tasks with overdue: true, sort: due.\n"
        "2. list_tasks with due_before: today's date, sort: due.\n"
        "3. list_tasks with ready: true, sort: priority, limit: 10.\n"
        "Then give me a short plan for today: overdue first, then due today, then at most three other "
        "tasks worth doing, one line each (#id, title, priority, due), and say what could wait. " + HANDS_OFF
    )


def _weekly_review(a: PromptArgs) -> str:
    return (
        f"Review my week in workspace '{a.workspace}' (pass workspace: '{a.workspace}' to every call).\n"
        "1. list_changes, limit: 50: what changed in the last 7 days, and by whom.\n"
        "2. list_tasks with status: completed, sort: updated: what got done.\n"
        "3. list_tasks with overdue: true, sort: due: what slipped.\n"
        "4. list_tasks with due_before: the date 7 days from now, sort: due: what comes next.\n"
        "Present four short sections (Done, Slipped, Next week, Suggestions), one line per task "
        "(#id, title, due), and end with at most three suggestions. " + HANDS_OFF
    )


def _triage(a: PromptArgs) -> str:
    return (
        f"Triage my open tasks in workspace '{a.workspace}' (pass workspace: '{a.workspace}' to every call).\n"
        "1. list_tasks with sort: created, limit: 50 (follow next_cursor once if there is more).\n"
        "2. Pick the tasks that need a decision: no priority, no due date, overdue, or likely duplicates.\n"
        "Show them as a table (#id, title, now, proposed priority and due) with a one-line reason each. "
        "After I confirm, apply the accepted rows with update_task (task_id, priority, due), one call "
        "per task, and report what changed."
    )


PROMPTS: tuple[PromptSpec, ...] = (
    PromptSpec(
        "plan_my_day",
        "Plan my day",
        "A plan for today from overdue, due and ready tasks.",
        (TIMEZONE, WORKSPACE),
        ("list_tasks",),
        _plan_my_day,
    ),
    PromptSpec(
        "weekly_review",
        "Weekly review",
        "What got done, what slipped and what comes next week.",
        (WORKSPACE,),
        ("list_tasks", "list_changes"),
        _weekly_review,
    ),
    PromptSpec(
        "triage",
        "Triage open tasks",
        "Propose priorities and due dates for open tasks, then apply the ones you accept.",
        (WORKSPACE,),
        ("list_tasks", "update_task"),
        _triage,
    ),
)


def offered_prompts(tools: Collection[str]) -> tuple[PromptSpec, ...]:
    """The prompts whose every tool is among `tools` (the tools this server offers)."""
    return tuple(p for p in PROMPTS if all(t in tools for t in p.needs))


def mcp_prompt(spec: PromptSpec) -> Prompt:
    return Prompt(name=spec.name, title=spec.title, description=spec.description, arguments=list(spec.arguments))


def get_prompt(name: str, arguments: Mapping[str, str] | None, tools: Collection[str]) -> GetPromptResult:
    """The message of prompt `name`; raises `InvalidArgumentError` for an unknown prompt or a bad
    argument, and `ForbiddenError` for a prompt that needs a tool this server does not offer."""
    spec = next((p for p in PROMPTS if p.name == name), None)
    if spec is None:
        known = ", ".join(p.name for p in offered_prompts(tools)) or "none"
        raise InvalidArgumentError(f"There is no prompt named {name!r}. Prompts offered here: {known}.")
    missing = [t for t in spec.needs if t not in tools]
    if missing:
        raise ForbiddenError(
            f"The prompt {name} needs {', '.join(missing)}, which this server does not offer "
            "(TASK_MCP_READ_ONLY or TASK_MCP_TOOLSETS). Call prompts/list to see the prompts offered."
        )
    taken = {a.name for a in spec.arguments}
    given = {k: v for k, v in (arguments or {}).items() if v != ""}  # hosts send unfilled fields as ""
    unknown = sorted(set(given) - taken)
    if unknown:
        raise InvalidArgumentError(
            f"The prompt {name} takes no argument {', '.join(map(repr, unknown))}; "
            f"its arguments: {', '.join(sorted(taken))}."
        )
    try:
        args = PromptArgs.model_validate(given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        )
        raise InvalidArgumentError(f"{problems}. Fix the argument and get the prompt again.") from None
    text = spec.message(args)
    return GetPromptResult(
        description=spec.description,
        messages=[PromptMessage(role="user", content=TextContent(type="text", text=text))],
    )
