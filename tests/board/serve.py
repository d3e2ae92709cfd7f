"""Run a real `task-mcp serve --transport http` for the board harness, then a command against it.

    .venv/bin/python tests/board/serve.py -- node tests/board/run.mjs

starts a loopback JWKS (task_mcp.testing.JwksServer), a server on a free port with a fresh SQLite
database trusting it, and runs the command with TASK_MCP_E2E_URL, TASK_MCP_E2E_TOKEN (valid for
an hour), TASK_MCP_E2E_BAD_TOKEN (signed by a key the server does not trust) and, for stdio runs,
TASK_MCP_E2E_COMMAND plus the TASK_MCP_* settings a stdio server needs. It exits with the
command's status. Without a command it prints those variables and serves until interrupted.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from task_mcp.testing import JwksServer, SigningKey

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"task-mcp serve exited with status {process.returncode} before it answered")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer (401 without a token) means it is up
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"task-mcp serve did not answer at {url} within {timeout:.0f} s")


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so the `finally` below stops the server


@contextmanager
def running_server(task_mcp: Path = ROOT / ".venv" / "bin" / "task-mcp") -> Iterator[dict[str, str]]:
    """A `task-mcp serve --transport http` on a free port with a fresh database, trusting a loopback
    JWKS; yields the TASK_MCP_E2E_* variables (and settings) run.mjs needs to reach it."""
    with JwksServer() as jwks, tempfile.TemporaryDirectory(prefix="task-mcp-board-") as tmp:
        settings = {
            "TASK_MCP_BETTER_AUTH_URL": jwks.base_url,
            "TASK_MCP_DATABASE_URL": f"sqlite:///{tmp}/tasks.db",
            "TASK_MCP_LOG_LEVEL": "WARNING",
        }
        port = free_port()
        url = f"http://127.0.0.1:{port}/mcp"
        server = subprocess.Popen(
            [str(task_mcp), "serve", "--transport", "http", "--port", str(port)],
            env={**os.environ, **settings},
        )
        try:
            wait_until_up(url, server)
            yield {
                **settings,
                "TASK_MCP_E2E_URL": url,
                "TASK_MCP_E2E_TOKEN": jwks.mint(lifetime=3600),
                "TASK_MCP_E2E_BAD_TOKEN": SigningKey.generate().sign(
                    {"sub": "user-alice", "iss": jwks.base_url, "aud": jwks.base_url, "exp": int(time.time()) + 3600}
                ),
                "TASK_MCP_E2E_COMMAND": f"{task_mcp} serve",  # run.mjs splits it at spaces
            }
        finally:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGINT, _exit_on_signal)  # also when started in the background (SIGINT ignored)
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    with running_server() as e2e:
        if command:
            return subprocess.call(command, env={**os.environ, **e2e})
        for key, value in e2e.items():
            print(f"export {key}={shlex.quote(value)}")
        sys.stdout.flush()
        signal.pause()  # serve until interrupted
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
