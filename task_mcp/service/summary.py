"""The one-line `summary` of a change, for every kind of change and field (DESIGN §9):
`#3 priority high → urgent; due cleared`, `created 50 tasks #5-#54` (with an en dash), `deleted #7 and 3 subtasks`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from task_mcp.dates import format_instant
from task_mcp.models import PRIORITIES

if TYPE_CHECKING:
    from task_mcp.service.journal import Touch

EN_DASH, MINUS = "\u2013", "\u2212"  # typographic range and minus, as people write them


def clip(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def _ids(numbers: Sequence[int]) -> str:
    numbers = sorted(numbers)
    if len(numbers) > 2 and numbers[-1] - numbers[0] == len(numbers) - 1:
        return f"#{numbers[0]}{EN_DASH}#{numbers[-1]}"
    shown = ", ".join(f"#{n}" for n in numbers[:5])
    return shown + (f" and {len(numbers) - 5} more" if len(numbers) > 5 else "")


def _due(fields: dict[str, Any]) -> str | None:
    day, instant = fields.get("due_date"), fields.get("due_at")
    return day.isoformat() if day is not None else format_instant(instant)


def _set(name: str, old: str | None, new: str | None) -> str:
    if new is None:
        return f"{name} cleared"
    return f"{name} {old} → {new}" if old is not None else f"{name} → {new}"


def field_parts(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """`priority high → urgent`, `due cleared`, `tags +home -work` (with a minus sign), ... for one task's change."""
    parts: list[str] = []
    if "status" in after:
        parts.append("completed" if after["status"] == "completed" else "reopened")
    if after.get("occurrence") is not None:
        parts.append("completed an occurrence")
    if "title" in after:
        parts.append(f'title "{clip(before["title"], 30)}" → "{clip(after["title"], 30)}"')
    if "description" in after:
        parts.append(
            "description cleared"
            if after["description"] is None
            else f"description {'changed' if before['description'] else 'set'}"
        )
    if "priority" in after:
        parts.append(f"priority {PRIORITIES[before['priority']]} → {PRIORITIES[after['priority']]}")
    if "due_at" in after or "due_date" in after:
        parts.append(_set("due", _due(before), _due(after)))
    if "tags" in after:
        old, new = set(filter(None, before["tags"].split("\n"))), set(filter(None, after["tags"].split("\n")))
        parts.append(
            "tags " + " ".join([f"+{t}" for t in sorted(new - old)] + [f"{MINUS}{t}" for t in sorted(old - new)])
        )
    if "parent_number" in after:
        old_parent, new_parent = before["parent_number"], after["parent_number"]
        parts.append(_set("parent", f"#{old_parent}" if old_parent else None, f"#{new_parent}" if new_parent else None))
    if "assignee" in after:
        parts.append(_set("assignee", None, after["assignee"]))
    if "repeat" in after:
        parts.append(_set("repeat", None, after["repeat"]))
    if "blocked_by" in after:
        blockers = " ".join(f"#{n}" for n in after["blocked_by"].split(",") if n)
        parts.append(f"blocked by {blockers}" if blockers else "blocked_by cleared")
    if after.get("note") is not None:
        parts.append(f"note {after['note']} added")
    elif "note" in after:
        parts.append(f"note {before['note']} removed")
    return parts


def summarize(touches: Sequence[Touch], titles: dict[int, str], *, task_count: int | None = None) -> str:
    """One line a person can read, for every kind of change."""
    count = task_count if task_count is not None else len(touches)
    kinds = {t.kind for t in touches}
    numbers = [t.number for t in touches]
    if kinds == {"created"}:
        if count == 1:
            return f'created #{numbers[0]} "{clip(titles.get(numbers[0], ""), 60)}"'
        return f"created {count} tasks {_ids(numbers)}"
    if kinds <= {"deleted", "restored"} and len(kinds) == 1:
        verb = kinds.pop()
        groups = {t.group_after if verb == "deleted" else t.group_before for t in touches}
        root = groups.pop() if len(groups) == 1 else None
        if root is not None and (root in numbers or task_count is not None):
            more = count - 1
            return f"{verb} #{root}" + (f" and {more} subtask{'s' if more > 1 else ''}" if more else "")
        return f"{verb} #{numbers[0]}" if count == 1 else f"{verb} {count} tasks {_ids(numbers)}"
    lines = []
    for t in touches:
        if t.kind == "fields" and t.before is not None and t.after is not None:
            parts = field_parts(t.before, t.after)
            if parts in (["completed"], ["reopened"]):
                lines.append(f"{parts[0]} #{t.number}")
            else:
                lines.append(f"#{t.number} " + "; ".join(parts))
        else:
            lines.append(f"{t.kind} #{t.number}")
    return "; ".join(lines)
