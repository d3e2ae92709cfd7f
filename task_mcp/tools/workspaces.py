"""The `workspaces` toolset: `list_workspaces`, the caller's workspaces and their known members."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic import Field as PField

from task_mcp.service import TaskService
from task_mcp.service.journal import Receipt
from task_mcp.service.workspaces import Caller, WorkspaceInfo
from task_mcp.tools.base import Args, ToolSpec


class ListWorkspacesResult(BaseModel):
    workspaces: list[dict[str, Any]] = PField(
        description="each {workspace (the name to pass as workspace), id, name, role, members_total; "
        "with a workspace argument also members: [{user_id, name, email, role}]}"
    )


def _list(service: TaskService, caller: Caller, args: Args, receipt: Receipt) -> list[WorkspaceInfo]:
    return service.list_workspaces(caller, args.workspace)


def _render(args: Args, found: list[WorkspaceInfo]) -> tuple[dict[str, Any], str]:
    items: list[dict[str, Any]] = []
    lines: list[str] = []
    for ws in found:
        item: dict[str, Any] = {"workspace": ws.workspace, "id": ws.id, "name": ws.name, "role": ws.role}
        item["members_total"] = ws.members_total
        people = "member" if ws.members_total == 1 else "members"
        lines.append(f"{ws.workspace}: {ws.name} (you: {ws.role}; {ws.members_total} known {people})")
        if ws.members is not None:
            item["members"] = ws.members
            for member in ws.members:
                who = " ".join(str(member[k]) for k in ("name", "email") if member.get(k))
                lines.append(f"- {member['user_id']}{f' {who}' if who else ''} ({member['role']})")
        items.append(item)
    return {"workspaces": items}, "\n".join(lines)


TOOLS: tuple[ToolSpec[Any, Any], ...] = (
    ToolSpec(
        "list_workspaces",
        "List workspaces",
        "List the workspaces you can use: 'personal' (your own list) first, then each organization your "
        "token lists, with your role. Pass workspace to see one with its members: the people who have "
        "used this server with it (others appear once they do), whom you can name as assignee.",
        Args,
        ListWorkspacesResult,
        write=False,
        destructive=False,
        idempotent=True,
        call=_list,
        render=_render,
        toolset="workspaces",
        names_workspace=False,
    ),
)
