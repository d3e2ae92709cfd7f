"""The `task-mcp` command: serve, migrate, demo."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import anyio

from task_mcp.config import Settings, load_settings
from task_mcp.errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="task-mcp", description="An MCP server that gives AI agents a personal task list."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve MCP over stdio (the default) or Streamable HTTP")
    serve.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP only (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="HTTP only (default 8000)")
    serve.add_argument("--database-url", help="overrides TASK_MCP_DATABASE_URL")
    migrate = commands.add_parser("migrate", help="create or upgrade the database schema")
    migrate.add_argument("--database-url", help="overrides TASK_MCP_DATABASE_URL")
    commands.add_parser("demo", help="run a short scripted session against a throwaway server")
    return parser


def _configure_logging(settings: Settings) -> None:
    # stderr only: on stdio, stdout carries the MCP messages.
    logging.basicConfig(
        stream=sys.stderr, level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    try:
        if command == "demo":
            from task_mcp.demo import run_demo

            return run_demo()
        settings = load_settings(database_url=getattr(args, "database_url", None))
        _configure_logging(settings)
        from task_mcp.server import TaskMcp

        app = TaskMcp(settings)
        app.migrate()
        if command == "migrate":
            print(f"database is at the newest schema: {app.database.engine.url.render_as_string()}")
            return 0
        if args.transport == "http":
            print("task-mcp: error: --transport http is not available yet", file=sys.stderr)
            return 2
        anyio.run(app.serve_stdio)
        return 0
    except ConfigError as exc:
        print(f"task-mcp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
