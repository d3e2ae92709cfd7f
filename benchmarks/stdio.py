"""task-mcp serve and the no-op server as stdio subprocesses, driven by the SDK's own client.

- `per_call`: p50/p99 of each tool call against the no-op call, in interleaved batches;
- `context_cost`: bytes of the `tools/list` answer and of a 20-task `list_tasks` result;
- `cold_start`: spawn to the first `tools/list` answer, alternating the two servers.
"""

from __future__ import annotations

import compileall
import itertools
import json
import os
import random
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult

from benchmarks.report import Row
from benchmarks.seed import TAG
from benchmarks.stats import median, p50, p99, verdict
from task_mcp.credentials import META_KEY

ROOT = Path(__file__).resolve().parent.parent

WARMUP = 20  # calls of each kind before measuring
ROUNDS = 20  # interleaved rounds; in each, every operation runs one batch beside one no-op batch
BATCH = 20
COLD_STARTS = 10  # spawns of each server

Call = Callable[[], Awaitable[CallToolResult]]


def task_mcp_params(database_url: str, auth_base_url: str) -> StdioServerParameters:
    # The SDK passes only HOME, LOGNAME, PATH, SHELL, TERM and USER on; the rest goes in env.
    env = {"TASK_MCP_DATABASE_URL": database_url, "TASK_MCP_BETTER_AUTH_URL": auth_base_url,
           "TASK_MCP_LOG_LEVEL": "WARNING"}  # fmt: skip
    return StdioServerParameters(command=sys.executable, args=["-m", "task_mcp", "serve"], env=env, cwd=ROOT)


def noop_params() -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "benchmarks.noop_server"], cwd=ROOT)


def _checked(result: CallToolResult) -> CallToolResult:
    if result.is_error:  # a benchmark of error answers would be worthless
        raise RuntimeError("tool call failed: " + " ".join(getattr(c, "text", "") for c in result.content))
    return result


async def _time(call: Call) -> float:
    started = time.perf_counter()
    _checked(await call())
    return time.perf_counter() - started


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


# --- CPU time, to tell the server's share of a call from the client's (Linux /proc only) ----------


def _child_pids() -> set[int]:
    """Processes whose parent is this one: the stdio servers the SDK client spawned."""
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid():
                    children.add(int(entry.name))
            except (OSError, IndexError, ValueError):
                pass
    return children


def _process_cpu(pid: int | None) -> float:
    """User + system CPU seconds of `pid` (all its threads), or of this process when None."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Adds up the server's and this client's CPU time over the batches run under `measure`."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid, self.server, self.client, self.calls = server_pid, 0.0, 0.0, 0

    async def measure(self, op: Call, count: int) -> list[float]:
        server, client = self._server_cpu(), _process_cpu(None)
        times = [await _time(op) for _ in range(count)]
        self.server += self._server_cpu() - server
        self.client += _process_cpu(None) - client
        self.calls += count
        return times

    def _server_cpu(self) -> float:
        return _process_cpu(self.server_pid) if self.server_pid is not None else 0.0

    def per_call(self) -> tuple[float | None, float]:
        server = self.server / self.calls if self.server_pid is not None else None
        return server, self.client / self.calls


async def per_call(params: StdioServerParameters, token: str) -> tuple[list[Row], dict[str, Any]]:
    """Per-call cost of each tool over stdio, as a ratio to the no-op call's p50."""
    meta = {META_KEY: f"Bearer {token}"}  # verified on every call; the no-op gets the same bytes
    rng = random.Random(7)
    counter = itertools.count(1)
    async with AsyncExitStack() as stack:
        before = _child_pids() if Path("/proc/self/stat").exists() else None
        noop = await stack.enter_async_context(Client(noop_params(), read_timeout_seconds=60))
        with_noop = _child_pids() if before is not None else None
        tasks = await stack.enter_async_context(Client(params, read_timeout_seconds=60))
        pids: tuple[int | None, int | None] = (None, None)
        if before is not None and with_noop is not None:
            pids = _only(with_noop - before), _only(_child_pids() - with_noop)
        first = _checked(await tasks.call_tool("list_tasks", {}, meta=meta)).structured_content or {}
        cursor = first["next_cursor"]
        user_tasks = first["total"]

        def call(name: str, args: Callable[[], dict[str, Any]]) -> Call:
            return lambda: tasks.call_tool(name, args(), meta=meta)

        # Each claim_task takes the first ready task and is journaled; its claims are released after
        # each batch, outside the timing, so the run never runs out of ready tasks and the ready
        # list never has more than a batch of claimed tasks to step over.
        claimed: list[tuple[int, str]] = []

        async def claim() -> CallToolResult:
            result = _checked(await tasks.call_tool("claim_task", {}, meta=meta))
            answer = result.structured_content or {}
            if not answer.get("claim"):
                raise RuntimeError("claim_task found no ready task: the benchmark would time empty answers")
            claimed.append((answer["task"]["id"], answer["claim"]["claim_id"]))
            return result

        async def release_claimed() -> None:
            while claimed:
                task_id, claim_id = claimed.pop()
                _checked(await tasks.call_tool("release_task", {"task_id": task_id, "claim_id": claim_id}, meta=meta))

        operations: dict[str, Call] = {
            "list_tasks (default page)": call("list_tasks", dict),
            f"list_tasks (tags=[{TAG}])": call("list_tasks", lambda: {"tags": [TAG]}),
            "list_tasks (2nd page, cursor)": call("list_tasks", lambda: {"cursor": cursor}),
            "get_task": call("get_task", lambda: {"task_id": rng.randint(1, 10_000)}),
            "create_task": call("create_task", lambda: {"title": f"Benchmark task {next(counter)}", "tags": ["bench"]}),
            "update_task": call(
                "update_task", lambda: {"task_id": rng.randint(1, 10_000), "title": f"Renamed {next(counter)}"}
            ),
            "list_tasks (ready: true)": call("list_tasks", lambda: {"ready": True}),
            "claim_task": claim,
        }
        noop_call: Call = lambda: noop.call_tool("noop", {}, meta=meta)  # noqa: E731

        for op in [noop_call, *operations.values()]:
            for _ in range(WARMUP):
                await _time(op)
            await release_claimed()

        samples: dict[str, list[float]] = {name: [] for name in operations}
        beside: dict[str, list[float]] = {name: [] for name in operations}  # no-op batches next to each op
        noop_cpu = CpuMeter(pids[0])
        cpu = {name: CpuMeter(pids[1]) for name in operations}
        for _ in range(ROUNDS):
            for name, op in operations.items():
                beside[name] += await noop_cpu.measure(noop_call, BATCH)
                samples[name] += await cpu[name].measure(op, BATCH)
                await release_claimed()
        rss = {"noop": _rss_bytes(pids[0]), "task_mcp": _rss_bytes(pids[1])}  # after the run, both still up

    all_noop = [s for values in beside.values() for s in values]
    floor = p50(all_noop)
    section = f"Per call over stdio, {user_tasks:,} open tasks in the user's list (ratio to the no-op call's p50)"
    noop_server_cpu, noop_client_cpu = noop_cpu.per_call()
    cpu_note = ""
    if noop_server_cpu:
        cpu_note = f"; CPU per call: server {_ms(noop_server_cpu)}, client {_ms(noop_client_cpu)}"
    rows = [Row(section, "no-op tool call (floor)", _ms(floor), detail=f"p99 {_ms(p99(all_noop))}{cpu_note}")]
    # Issue #14's targets; the ready list is reported only.
    targets = {"list_tasks": 1.5, "get_task": 1.3, "create_task": 1.8, "update_task": 1.8, "claim_task": 1.8}
    data: dict[str, Any] = {
        "noop_p50_s": floor,
        "noop_p99_s": p99(all_noop),
        "noop_server_cpu_s": noop_server_cpu,
        "noop_client_cpu_s": noop_client_cpu,
        "calls_per_operation": ROUNDS * BATCH,
    }
    for name, values in samples.items():
        base = p50(beside[name])
        ratio, tail = p50(values) / base, p99(values) / base
        limit = None if "ready" in name else targets.get(name.split(" ")[0])
        server_cpu, client_cpu = cpu[name].per_call()
        # The client's own work on this answer (parsing, validating) is on every call's path: with a
        # server as cheap as the no-op's, the call would still take the no-op's time plus that.
        client_floor = (base + client_cpu - noop_client_cpu) / base
        cpu_note = f"; client's extra work alone {client_floor:.2f}x"
        if server_cpu is not None and noop_server_cpu:
            cpu_note += (
                f"; CPU/call server {_ms(server_cpu)} ({server_cpu / noop_server_cpu:.1f}x no-op's), "
                f"client {_ms(client_cpu)} ({client_cpu / noop_client_cpu:.1f}x)"
            )
        rows.append(
            Row(
                section,
                f"{name}  p50",
                f"{ratio:.2f}x",
                value=ratio,
                target=f"≤ {limit}x" if limit else "",
                verdict=verdict(ratio, limit) if limit else "",
                detail=f"{_ms(p50(values))} vs {_ms(base)}; p99 {tail:.1f}x{cpu_note}",
                data={
                    **{"p50_s": p50(values), "p99_s": p99(values), "noop_p50_s": base, "p99_ratio": tail},
                    **{"server_cpu_s": server_cpu, "client_cpu_s": client_cpu, "client_floor_ratio": client_floor},
                },
            )
        )
        data[name] = rows[-1].data
    if rss["noop"] and rss["task_mcp"]:
        ratio = rss["task_mcp"] / rss["noop"]
        rows.append(
            Row(
                section,
                "server RSS after the run vs the no-op server's",
                f"{ratio:.2f}x",
                value=ratio,
                detail=f"{rss['task_mcp'] / 2**20:.0f} MiB vs {rss['noop'] / 2**20:.0f} MiB (VmRSS)",
                data=rss,
            )
        )
    data["rss_bytes"] = rss
    return rows, data


def _rss_bytes(pid: int | None) -> int | None:
    """Resident memory of `pid` (VmRSS in /proc/<pid>/status), or None where that cannot be read."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _only(pids: set[int]) -> int | None:
    return next(iter(pids)) if len(pids) == 1 else None


async def context_cost(params: StdioServerParameters, token: str) -> list[Row]:
    """What the model pays in context: the tool listing and a 20-task page (≈ tokens = bytes / 4)."""
    async with Client(params, read_timeout_seconds=60) as tasks:
        listing = await tasks.list_tools(cache_mode="refresh")
        page = _checked(await tasks.call_tool("list_tasks", {}, meta={META_KEY: f"Bearer {token}"}))
    # DESIGN §4: the `tasks` toolset alone within 12,000 bytes, every toolset together within 18,000.
    only_tasks = params.model_copy(update={"env": {**(params.env or {}), "TASK_MCP_TOOLSETS": "tasks"}})
    async with Client(only_tasks, read_timeout_seconds=60) as tasks:
        tasks_listing = await tasks.list_tools(cache_mode="refresh")
    listing_bytes = len(listing.model_dump_json(by_alias=True, exclude_none=True).encode())
    tasks_bytes = len(tasks_listing.model_dump_json(by_alias=True, exclude_none=True).encode())
    structured = len(json.dumps(page.structured_content, separators=(",", ":"), ensure_ascii=False).encode())
    text = sum(len(c.text.encode()) for c in page.content if c.type == "text")
    wire = len(page.model_dump_json(by_alias=True, exclude_none=True).encode())
    count = len((page.structured_content or {}).get("tasks", []))
    section = "Context cost (≈ tokens = bytes / 4)"
    return [
        Row(
            section,
            f"tools/list, tasks toolset ({len(tasks_listing.tools)} tools)",
            f"{tasks_bytes:,} B",
            tasks_bytes,
            "≤ 12,000 B",
            verdict(tasks_bytes, 12_000),
            f"≈ {tasks_bytes // 4:,} tokens",
        ),
        Row(
            section,
            f"tools/list, every toolset ({len(listing.tools)} tools)",
            f"{listing_bytes:,} B",
            listing_bytes,
            "≤ 18,000 B",
            verdict(listing_bytes, 18_000),
            f"≈ {listing_bytes // 4:,} tokens",
        ),
        Row(
            section,
            f"list_tasks page of {count} tasks",
            f"{structured + text:,} B",
            structured + text,
            "≤ 6,000 B",
            verdict(structured + text, 6_000),
            f"structured {structured:,} B + text {text:,} B ≈ {(structured + text) // 4:,} tokens; "
            f"whole JSON result {wire:,} B",
        ),
    ]


async def _spawn_to_tools_list(params: StdioServerParameters) -> float:
    started = time.perf_counter()
    async with Client(params, read_timeout_seconds=60) as client:
        await client.list_tools()
        elapsed = time.perf_counter() - started
    return elapsed


async def cold_start(params: StdioServerParameters) -> list[Row]:
    """Spawn to the first `tools/list` answer, median of COLD_STARTS each, alternating servers.

    Both start from compiled bytecode, as an installed package does (pip compiles it): in a
    checkout run with PYTHONDONTWRITEBYTECODE, every edited module would be compiled again on
    every spawn, and the figure would measure the edits."""
    for package in ("task_mcp", "benchmarks"):
        compileall.compile_dir(ROOT / package, quiet=1)
    ours: list[float] = []
    floor: list[float] = []
    for _ in range(COLD_STARTS):
        floor.append(await _spawn_to_tools_list(noop_params()))
        ours.append(await _spawn_to_tools_list(params))
    ratio = median(ours) / median(floor)
    return [
        Row(
            "Cold start over stdio (spawn to first tools/list answer; existing database)",
            "task-mcp serve vs no-op server",
            f"{ratio:.2f}x",
            ratio,
            "≤ 1.5x",
            verdict(ratio, 1.5),
            f"median {_ms(median(ours))} vs {_ms(median(floor))}; n={COLD_STARTS} each",
            {"task_mcp_s": ours, "noop_s": floor},
        ),
    ]
