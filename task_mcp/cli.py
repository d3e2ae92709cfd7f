"""The `task-mcp` command: serve, migrate, doctor, demo."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio

from task_mcp.config import Settings, load_settings
from task_mcp.errors import ConfigError

if TYPE_CHECKING:
    from task_mcp.server import TaskMcp


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="task-mcp", description="An MCP server that gives AI agents task lists: personal, and shared by teams."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="serve MCP over stdio (the default) or Streamable HTTP")
    serve.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    serve.add_argument("--host", default="127.0.0.1", help="HTTP only (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="HTTP only (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="HTTP only: processes serving the one port (default 1)")
    serve.add_argument("--database-url", help="overrides TASK_MCP_DATABASE_URL")
    migrate = commands.add_parser("migrate", help="create or upgrade the database schema")
    migrate.add_argument("--database-url", help="overrides TASK_MCP_DATABASE_URL")
    doctor = commands.add_parser(
        "doctor", help="check the configuration, database, JWKS and launch token; print what to fix"
    )
    doctor.add_argument("--database-url", help="overrides TASK_MCP_DATABASE_URL")
    commands.add_parser("demo", help="run a short scripted session against a throwaway server")
    return parser


def _configure_logging(settings: Settings) -> None:
    # stderr only: on stdio, stdout carries the MCP messages.
    logging.basicConfig(
        stream=sys.stderr, level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if settings.log_level != "DEBUG":
        # Alembic logs ~9 INFO lines ("setup plugin ...", "Context impl ...") on every start.
        logging.getLogger("alembic").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    try:
        if command == "demo":
            from task_mcp.demo import run_demo

            return run_demo()
        if command == "doctor":
            from task_mcp.doctor import run_doctor

            # The report says what failed; the library warnings behind it would only repeat it.
            logging.basicConfig(stream=sys.stderr, level=logging.ERROR)
            return run_doctor(database_url=args.database_url)
        settings = load_settings(database_url=getattr(args, "database_url", None))
        _configure_logging(settings)
        workers = getattr(args, "workers", 1)
        if workers != 1:
            _check_workers(settings, workers, getattr(args, "transport", "stdio"))
        from task_mcp.server import TaskMcp

        app = TaskMcp(settings)
        app.migrate()
        if command == "migrate":
            print(f"database is at the newest schema: {app.database.engine.url.render_as_string()}")
            return 0
        if getattr(args, "transport", "stdio") == "http":
            if workers > 1:
                app.database.dispose()  # each worker opens its own
                return _serve_http_workers(settings, args.host, args.port, workers)
            return _serve_http(app, args.host, args.port)
        _freeze_startup_objects()
        anyio.run(app.serve_stdio)
        return 0
    except ConfigError as exc:
        print(f"task-mcp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _serve_http(app: TaskMcp, host: str, port: int) -> int:
    """Streamable HTTP at http://host:port/mcp with uvicorn, logging to stderr; `app` is migrated."""
    import uvicorn

    from task_mcp.http import create_http_app, request_deadline_protocol

    settings = app.settings
    http_app = create_http_app(settings, app=app, host=host, port=port, migrate=False)
    config = uvicorn.Config(
        http_app,
        host=host,
        port=port,
        # Slow or stuck clients: requests not received whole in time are closed, and connections
        # beyond the limit are answered 503 at once instead of starving the descriptors.
        http=request_deadline_protocol(settings.http_request_timeout_seconds),
        limit_concurrency=settings.http_max_connections,
        log_config=None,  # keep our stderr logging (uvicorn's own config sends access logs to stdout)
        log_level=app.settings.log_level.lower(),
        ws="none",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    _freeze_startup_objects()

    async def serve() -> None:
        try:
            await server.serve()
        finally:
            await app.aclose()

    anyio.run(serve)
    return 0 if server.started else 1


def _check_workers(settings: Settings, workers: int, transport: str) -> None:
    from sqlalchemy.engine import make_url

    if transport != "http":
        raise ConfigError("--workers: only with --transport http (stdio is one process per client)")
    if workers < 1:
        raise ConfigError(f"--workers: must be at least 1, not {workers}")
    url = make_url(settings.sqlalchemy_url)
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise ConfigError(
            f"TASK_MCP_DATABASE_URL: an in-memory SQLite database cannot be shared by {workers} worker processes; "
            "use a SQLite file or PostgreSQL, or --workers 1"
        )


def _freeze_startup_objects() -> None:
    """What start-up loaded (modules, tables, schemas: about 140,000 objects) lives as long as the
    process; moved out of the garbage collector's generations, a full collection no longer scans
    it (each took ~0.1 s, a pause in whichever call ran then). No `gc.collect()` first: it found
    nothing to free and cost a quarter of a second of start-up."""
    gc.freeze()


def _serve_http_workers(settings: Settings, host: str, port: int, workers: int) -> int:
    """N uvicorn worker processes on one port; each builds its app from the environment (`http_worker_app`)."""
    import os

    import uvicorn

    from task_mcp.http import resource_url

    # Settings travel to the workers through the environment: the CLI's overrides, and the resource
    # URL the metadata names, which each worker could not derive without knowing host and port.
    os.environ["TASK_MCP_DATABASE_URL"] = settings.sqlalchemy_url
    os.environ["TASK_MCP_RESOURCE_URL"] = resource_url(settings, host, port)
    uvicorn.run(
        "task_mcp.cli:http_worker_app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        http="task_mcp.http:WorkerDeadlineProtocol",
        limit_concurrency=settings.http_max_connections,
        log_config=None,
        log_level=settings.log_level.lower(),
        ws="none",
        lifespan="on",
    )
    return 0


def http_worker_app() -> Any:
    """One worker of `serve --transport http --workers N`: the HTTP app, from the environment's settings.

    The parent process has migrated the database; the app closes its own `TaskMcp` on shutdown.
    """
    from task_mcp.http import WorkerDeadlineProtocol, create_http_app

    settings = load_settings()
    _configure_logging(settings)
    WorkerDeadlineProtocol.request_timeout = settings.http_request_timeout_seconds
    app = create_http_app(settings, migrate=False)
    _freeze_startup_objects()
    return app


if __name__ == "__main__":
    raise SystemExit(main())
