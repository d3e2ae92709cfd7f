"""Shared fixtures: a real signing key behind a real JWKS endpoint, real databases, real clients.

Storage-touching tests take the `database_url` fixture, which runs them on SQLite and, when
TASK_MCP_TEST_POSTGRES_URL is set (CI always sets it), on PostgreSQL as well.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from task_mcp.auth import JwtVerifier
from task_mcp.config import Settings
from task_mcp.db import Database, migrate
from task_mcp.server import TaskMcp
from task_mcp.testing import JwksServer, SigningKey, claims_for
from tests.helpers import POSTGRES_URL, TABLES


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey.generate("EdDSA")


@pytest.fixture(scope="session")
def jwks(signing_key: SigningKey) -> Iterator[JwksServer]:
    with JwksServer([signing_key]) as server:
        yield server


@pytest.fixture
def mint(signing_key: SigningKey, jwks: JwksServer) -> Callable[..., str]:
    """mint("alice") -> a valid Better Auth-style JWT for user `alice`."""

    def mint(sub: str = "alice", **claims: Any) -> str:
        return signing_key.sign(claims_for(jwks.base_url, sub=sub, **claims))

    return mint


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "tasks.db"
    database = Database(f"sqlite:///{path}")
    migrate(database)
    database.dispose()
    return path


@pytest.fixture(scope="session")
def _postgres_migrated() -> str:
    assert POSTGRES_URL
    database = Database(POSTGRES_URL)
    migrate(database)
    database.dispose()
    return POSTGRES_URL


def _backends() -> list[Any]:
    skip = pytest.mark.skip(reason="set TASK_MCP_TEST_POSTGRES_URL to run the PostgreSQL tests")
    return ["sqlite", pytest.param("postgres", marks=() if POSTGRES_URL else skip)]


@pytest.fixture(params=_backends())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: a fresh SQLite file, or the shared PostgreSQL emptied."""
    if request.param == "sqlite":
        path = tmp_path / "tasks.db"
        shutil.copy(request.getfixturevalue("_sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("_postgres_migrated")
    database = Database(url)
    with database.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    database.dispose()
    return url


@pytest.fixture(params=_backends())
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it: a SQLite file not created yet, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'new.db'}"
        return
    assert POSTGRES_URL
    name = f"task_mcp_empty_{uuid.uuid4().hex[:10]}"
    server = create_engine(make_url(POSTGRES_URL).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


@pytest.fixture
def make_app(jwks: JwksServer, database_url: str) -> Iterator[Callable[..., TaskMcp]]:
    """make_app(read_only=True, ...) -> a TaskMcp on the test database, trusting the test JWKS."""
    apps: list[TaskMcp] = []

    def make(**overrides: Any) -> TaskMcp:
        settings = Settings(
            _env_file=None,
            database_url=database_url,
            better_auth_url=jwks.base_url,
            **overrides,
        )
        app = TaskMcp(settings, database=Database(database_url), verifier=JwtVerifier.from_settings(settings))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.database.dispose()


@pytest.fixture
def app(make_app: Callable[..., TaskMcp]) -> TaskMcp:
    return make_app()
