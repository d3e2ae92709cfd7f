"""`task-mcp doctor`: one screen of `OK  ...` / `FIX ...` lines, exit 0 only when all is well.

Runs in-process through `task_mcp.cli.main` with a clean TASK_MCP_* environment, against the conftest
JWKS and databases; one test runs the real command as a subprocess.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from task_mcp.cli import main
from task_mcp.db import Database, head_revision
from task_mcp.testing import JwksServer, SigningKey, claims_for
from tests.loopback import Loopback, Request

Doctor = Callable[..., tuple[int, str]]


@pytest.fixture
def doctor(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], jwks: JwksServer, database_url: str
) -> Doctor:
    """doctor(TOKEN=..., ...) -> (exit code, stdout); a good configuration unless told otherwise."""

    def run(*args: str, **env: str | None) -> tuple[int, str]:
        for name in [k for k in os.environ if k.startswith("TASK_MCP_")]:
            monkeypatch.delenv(name)
        values = {"DATABASE_URL": database_url, "BETTER_AUTH_URL": jwks.base_url, **env}
        for name, value in values.items():
            if value is not None:
                monkeypatch.setenv(f"TASK_MCP_{name}", value)
        capsys.readouterr()
        code = main(["doctor", *args])
        out = capsys.readouterr().out
        lines = out.splitlines()
        assert lines, "doctor printed nothing"
        assert all(line.startswith(("OK  ", "FIX ")) for line in lines), out
        assert code == (0 if all(line.startswith("OK  ") for line in lines) else 1), out
        return code, out

    return run


def fix_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("FIX ")]


def test_a_good_configuration_and_token_pass_and_name_the_user(doctor: Doctor, mint: Callable[..., str]) -> None:
    token = mint("user-alice")
    code, out = doctor(TOKEN=token)
    assert code == 0, out
    assert "user user-alice <user-alice@example.com>" in out
    assert "scopes: all" in out and "expires 20" in out and "(in 14 min)" in out
    assert f"schema at the newest revision ({head_revision()})" in out
    assert "JWKS at" in out and "(EdDSA)" in out
    assert token not in out and token.split(".")[2] not in out


def test_without_a_launch_token_it_still_passes(doctor: Doctor) -> None:
    code, out = doctor()
    assert code == 0 and "no launch token configured" in out


def test_scoped_token_is_described_and_a_token_file_is_read(
    doctor: Doctor, mint: Callable[..., str], tmp_path: Path
) -> None:
    path = tmp_path / "token"
    path.write_text(f"Bearer {mint('bob', scope='tasks:read')}\n")
    path.chmod(0o600)
    code, out = doctor(TOKEN_FILE=str(path))
    assert code == 0, out
    assert "user bob" in out and "scopes: tasks:read (read-only" in out and str(path) in out


def test_an_expired_token_is_a_fix(doctor: Doctor, signing_key: SigningKey, jwks: JwksServer) -> None:
    expired = signing_key.sign(claims_for(jwks.base_url, "user-alice", lifetime=-3600))
    code, out = doctor(TOKEN=expired)
    assert code == 1
    [line] = fix_lines(out)
    assert line.startswith("FIX token (TASK_MCP_TOKEN): The token has expired.") and "GET /api/auth/token" in line
    assert expired not in out


def test_a_token_from_another_key_or_a_missing_token_file_is_a_fix(
    doctor: Doctor, jwks: JwksServer, tmp_path: Path
) -> None:
    stranger = SigningKey.generate().sign(claims_for(jwks.base_url))
    code, out = doctor(TOKEN=stranger)
    assert code == 1 and "does not publish" in fix_lines(out)[0]
    code, out = doctor(TOKEN_FILE=str(tmp_path / "nope"))
    assert code == 1 and "does not exist" in fix_lines(out)[0]


def test_an_unreachable_jwks_is_a_fix(doctor: Doctor, mint: Callable[..., str]) -> None:
    code, out = doctor(JWKS_URL="http://127.0.0.1:1/api/auth/jwks", TOKEN=mint("alice"))
    assert code == 1
    jwks_line, token_line = fix_lines(out)
    assert jwks_line.startswith("FIX JWKS at http://127.0.0.1:1/api/auth/jwks cannot be read (connection failed)")
    assert "TASK_MCP_BETTER_AUTH_URL" in jwks_line
    assert "could not be reached" in token_line


def test_keys_for_another_algorithm_are_a_fix(doctor: Doctor) -> None:
    code, out = doctor(ALGORITHMS="ES256")
    assert code == 1
    assert "Set TASK_MCP_ALGORITHMS=EdDSA" in fix_lines(out)[0]


def test_no_better_auth_url_is_a_fix(doctor: Doctor) -> None:
    code, out = doctor(BETTER_AUTH_URL=None)
    assert code == 1 and "Set TASK_MCP_BETTER_AUTH_URL" in fix_lines(out)[0]


def test_a_jwks_without_an_issuer_and_audience_to_check_is_a_fix(doctor: Doctor, jwks: JwksServer) -> None:
    code, out = doctor(BETTER_AUTH_URL=None, JWKS_URL=jwks.url, ISSUER=jwks.base_url)
    assert code == 1
    [line] = fix_lines(out)
    assert "TASK_MCP_JWKS_URL is set without TASK_MCP_AUDIENCE" in line
    assert "Set TASK_MCP_BETTER_AUTH_URL, or both TASK_MCP_ISSUER and TASK_MCP_AUDIENCE" in line
    code, out = doctor(BETTER_AUTH_URL=None, JWKS_URL=jwks.url, ISSUER=jwks.base_url, AUDIENCE=jwks.base_url)
    assert code == 0, out


def test_a_token_file_readable_by_others_is_a_fix(doctor: Doctor, mint: Callable[..., str], tmp_path: Path) -> None:
    path = tmp_path / "token"
    token = mint("bob")
    path.write_text(token)
    path.chmod(0o644)
    code, out = doctor(TOKEN_FILE=str(path))
    assert code == 1
    [line] = fix_lines(out)
    assert "readable by other users (mode 644)" in line and f"chmod 600 {path}" in line
    assert "user bob" in out  # the token itself is still checked
    assert token not in out


def test_a_fifo_or_huge_token_file_is_a_fix_and_is_not_read(doctor: Doctor, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code, out = doctor(TOKEN_FILE=str(fifo))  # reading it would block doctor forever
    assert code == 1 and "not a regular file" in fix_lines(out)[0]
    huge = tmp_path / "huge"
    with huge.open("wb") as file:
        file.truncate(300_000_000)
    huge.chmod(0o600)
    code, out = doctor(TOKEN_FILE=str(huge))
    assert code == 1 and "larger than 64 KB" in fix_lines(out)[0]


def test_a_plain_http_better_auth_url_on_a_network_host_is_a_fix(doctor: Doctor) -> None:
    code, out = doctor(BETTER_AUTH_URL="http://auth.invalid")
    assert code == 1
    lines = [line for line in fix_lines(out) if "plain http://" in line]
    assert len(lines) == 1 and "TASK_MCP_BETTER_AUTH_URL http://auth.invalid" in lines[0] and "https://" in lines[0]
    _, out = doctor()  # the loopback http:// of the test JWKS is fine
    assert "plain http://" not in out


def test_a_jwks_redirected_to_another_origin_is_a_fix(doctor: Doctor, jwks: JwksServer) -> None:
    def redirect(request: Request) -> None:
        request.send(302, b"", headers={"Location": jwks.url})

    with Loopback(redirect) as server:
        code, out = doctor(BETTER_AUTH_URL=server.base_url)
    assert code == 1
    assert "redirected to another origin" in fix_lines(out)[0]


def test_bad_configuration_is_one_fix_line(doctor: Doctor) -> None:
    code, out = doctor(ALGORITHMS="HS256")
    assert code == 1
    assert out.splitlines() == fix_lines(out) and len(fix_lines(out)) == 1
    assert "TASK_MCP_ALGORITHMS" in out


def test_an_unmigrated_database_is_a_fix_and_doctor_does_not_migrate(doctor: Doctor, tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    code, out = doctor(DATABASE_URL=f"sqlite:///{empty}")
    assert code == 1
    [line] = fix_lines(out)
    assert "has no task_mcp schema. Run `task-mcp migrate`." in line
    with sqlite3.connect(empty) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []  # still empty

    missing = tmp_path / "missing.db"
    code, out = doctor("--database-url", f"sqlite:///{missing}")
    assert code == 1 and "no such file. Run `task-mcp migrate`" in fix_lines(out)[0]
    assert not missing.exists()  # checking did not create it


def test_a_schema_newer_than_the_code_is_a_fix(doctor: Doctor, database_url: str) -> None:
    database = Database(database_url)
    try:
        with database.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
        code, out = doctor()
        assert (
            code == 1 and f"newer than this task-mcp knows ({head_revision()}). Upgrade task-mcp." in fix_lines(out)[0]
        )
    finally:
        with database.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :head"), {"head": head_revision()})
        database.dispose()


def test_an_unreachable_database_is_a_fix_and_hides_the_password(doctor: Doctor) -> None:
    code, out = doctor(DATABASE_URL="postgresql+psycopg://tasks:s3cret-pw@127.0.0.1:1/tasks")
    assert code == 1
    [line] = fix_lines(out)
    assert line.startswith("FIX database postgresql+psycopg://tasks:***@127.0.0.1:1/tasks is unreachable (")
    assert "s3cret-pw" not in out


def test_the_command_runs_as_a_subprocess(jwks: JwksServer, mint: Callable[..., str], database_url: str) -> None:
    token = mint("user-alice")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASK_MCP_")} | {
        "TASK_MCP_DATABASE_URL": database_url,
        "TASK_MCP_BETTER_AUTH_URL": jwks.base_url,
        "TASK_MCP_TOKEN": token,
    }
    done = subprocess.run(
        [sys.executable, "-m", "task_mcp", "doctor"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "user-alice@example.com" in done.stdout and token not in done.stdout + done.stderr
    env["TASK_MCP_TOKEN"] = "not-a-jwt"
    done = subprocess.run(
        [sys.executable, "-m", "task_mcp", "doctor"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and "FIX token (TASK_MCP_TOKEN): The token is not a well-formed JWT" in done.stdout
