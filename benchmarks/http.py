"""HTTP throughput: 8 concurrent clients over Streamable HTTP, task-mcp vs the no-op server.

Both servers run as `uvicorn` subprocesses (stateless Streamable HTTP at /mcp). Eight SDK clients,
each with its own connection and `Authorization: Bearer <jwt>`, call as fast as they can for a
fixed window; windows alternate between the two servers. task-mcp gets a mix of list_tasks (half),
create_task and update_task; the no-op server gets its no-op tool. The clients run in this process,
so they share the machine's cores with the server being measured, for both servers alike. A third
server, `serve --transport http --workers 2`, gets the same mix: its rate against one worker's is
reported (no target), with the clients still in this process on the same machine.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from benchmarks.report import Row
from benchmarks.stats import verdict
from benchmarks.stdio import ROOT, _checked
from task_mcp.testing import JwksServer

CLIENTS = 8
WINDOW = 4.0  # seconds per measurement window
ROUNDS = 4  # windows per server, alternating
WARMUP = 2.0
SECTION = "HTTP throughput (Streamable HTTP, 8 concurrent clients, bearer token; ratio to the no-op server)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _has_http_transport() -> bool:
    import task_mcp.http

    return hasattr(task_mcp.http, "create_http_app")


@contextmanager
def _server(args: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    """Start a server subprocess, wait until its port accepts connections, yield its /mcp URL, stop it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TASK_MCP_")}
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, env=base | env, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(args)} exited with {proc.returncode}")
            try:  # uvicorn listens once the app's lifespan has started
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{' '.join(args)} did not start within 30 s") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _clients(stack: AsyncExitStack, url: str, token: str) -> list[Client]:
    clients = []
    for _ in range(CLIENTS):
        http = await stack.enter_async_context(
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
        )
        clients.append(await stack.enter_async_context(Client(streamable_http_client(url, http_client=http))))
    return clients


async def _window(calls: list[Callable[[], Awaitable[CallToolResult]]], seconds: float) -> tuple[int, float]:
    """Each caller calls in a loop until the window closes; returns (calls completed, seconds)."""
    done = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def worker(call: Callable[[], Awaitable[CallToolResult]]) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            _checked(await call())
            done += 1

    async with anyio.create_task_group() as tg:
        for call in calls:
            tg.start_soon(worker, call)
    return done, time.perf_counter() - started


def _mixed(client: Client, rng: random.Random, counter: Iterator[int]) -> Callable[[], Awaitable[CallToolResult]]:
    kinds = itertools.cycle(["list", "create", "list", "update"])

    def call() -> Awaitable[CallToolResult]:
        kind = next(kinds)
        if kind == "list":
            return client.call_tool("list_tasks", {})
        if kind == "create":
            return client.call_tool("create_task", {"title": f"HTTP task {next(counter)}", "tags": ["bench"]})
        return client.call_tool("update_task", {"task_id": rng.randint(1, 10_000), "title": f"HTTP {next(counter)}"})

    return call


async def throughput(database_url: str, stand_in: JwksServer, token: str) -> tuple[list[Row], str | None]:
    if not _has_http_transport():
        # TODO: runs once task_mcp.server.create_http_app and `task-mcp serve --transport http` exist.
        return [Row(SECTION, "mixed list/create/update vs no-op", "skipped", target="≥ 0.6x",
                    detail="skipped: no HTTP transport")], "HTTP throughput skipped: no HTTP transport"  # fmt: skip
    noop_port, ours_port = _free_port(), _free_port()
    env = {"TASK_MCP_DATABASE_URL": database_url, "TASK_MCP_BETTER_AUTH_URL": stand_in.base_url,
           "TASK_MCP_LOG_LEVEL": "WARNING"}  # fmt: skip
    ours_args = ["-m", "task_mcp", "serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(ours_port)]
    two_port = _free_port()
    two_args = [*ours_args[:-1], str(two_port), "--workers", "2"]
    noop_args = ["-m", "benchmarks.noop_server", "--http", "--port", str(noop_port)]
    rng, counter = random.Random(11), itertools.count(1)
    counts: dict[str, list[tuple[int, float]]] = {"noop": [], "ours": [], "workers2": []}
    with (
        _server(noop_args, {}, noop_port) as noop_url,
        _server(ours_args, env, ours_port) as ours_url,
        _server(two_args, env, two_port) as two_url,
    ):
        async with AsyncExitStack() as stack:
            noop_clients = await _clients(stack, noop_url, token)
            ours_clients = await _clients(stack, ours_url, token)
            two_clients = await _clients(stack, two_url, token)
            calls: dict[str, list[Callable[[], Awaitable[Any]]]] = {
                "noop": [lambda c=c: c.call_tool("noop", {}) for c in noop_clients],
                "ours": [_mixed(c, rng, counter) for c in ours_clients],
                "workers2": [_mixed(c, rng, counter) for c in two_clients],
            }
            for name in calls:
                await _window(calls[name], WARMUP)
            for _ in range(ROUNDS):
                for name in calls:
                    counts[name].append(await _window(calls[name], WINDOW))

    rate = {name: sum(n for n, _ in v) / sum(s for _, s in v) for name, v in counts.items()}
    ratio = rate["ours"] / rate["noop"]
    scaling = rate["workers2"] / rate["ours"]
    return [
        Row(
            SECTION,
            "mixed list/create/update vs no-op",
            f"{ratio:.2f}x",
            ratio,
            "≥ 0.6x",
            verdict(ratio, 0.6, at_most=False),
            f"{rate['ours']:.0f} vs {rate['noop']:.0f} calls/s; {ROUNDS} windows of {WINDOW:.0f} s each",
            {"calls_per_s": rate, "windows": counts},
        ),
        Row(
            SECTION,
            "serve --workers 2 vs one worker, same mix",
            f"{scaling:.2f}x",
            scaling,
            detail=f"{rate['workers2']:.0f} vs {rate['ours']:.0f} calls/s; clients in the benchmark process, "
            f"same machine ({os.cpu_count()} cores shared with both servers)",
        ),
    ], None
