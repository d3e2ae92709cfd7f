"""server.json, the MCP registry's description of this server, agrees with its schema and the package.

The schema is pinned in tests/schemas/server.schema.json (the registry's 2025-12-11 version, the
one server.json's `$schema` names); pyproject.toml gives the distribution name and version.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator

from task_mcp.config import Settings

ROOT = Path(__file__).resolve().parent.parent
SERVER_JSON: dict[str, Any] = json.loads((ROOT / "server.json").read_text())
SCHEMA: dict[str, Any] = json.loads((ROOT / "tests" / "schemas" / "server.schema.json").read_text())
PROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
README = (ROOT / "README.md").read_text()
SETTINGS = {f"TASK_MCP_{name.upper()}" for name in Settings.model_fields}


def pypi_package() -> dict[str, Any]:
    [package] = [p for p in SERVER_JSON["packages"] if p["registryType"] == "pypi"]
    return package


def test_server_json_is_valid_against_the_pinned_registry_schema() -> None:
    assert SERVER_JSON["$schema"] == SCHEMA["$id"]
    errors = sorted(Draft7Validator(SCHEMA).iter_errors(SERVER_JSON), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_pinned_schema_rejects_what_the_registry_rejects() -> None:
    broken = {**SERVER_JSON, "name": "no-slash", "description": "x" * 101}
    messages = [e.message for e in Draft7Validator(SCHEMA).iter_errors(broken)]
    assert any("does not match" in m for m in messages)
    assert any("is too long" in m for m in messages)


def test_server_json_names_the_pypi_distribution_and_its_version() -> None:
    package = pypi_package()
    assert package["identifier"] == PROJECT["name"]
    assert package["version"] == SERVER_JSON["version"] == PROJECT["version"]
    # `uvx <distribution> serve` must find a command of the distribution's own name.
    assert PROJECT["scripts"][PROJECT["name"]] == PROJECT["scripts"]["task-mcp"]
    assert package["runtimeHint"] == "uvx"
    assert package["transport"] == {"type": "stdio"}
    assert [a.get("value") for a in package["packageArguments"]] == ["serve"]


def test_server_json_environment_variables_are_settings_and_include_the_essential_ones() -> None:
    names = [variable["name"] for variable in pypi_package()["environmentVariables"]]
    assert len(names) == len(set(names))
    assert set(names) <= SETTINGS, f"not settings: {set(names) - SETTINGS}"
    # Essential: what the README's mcp.json entry sets, and the three ways to give a token.
    mcp_json = json.loads((ROOT / "mcp.json").read_text())["mcpServers"]["tasks"]["env"]
    [one_of] = re.findall(r"Set \*\*one\*\* of (.*?)\. An empty value", README, re.DOTALL)
    tokens = set(re.findall(r"`(TASK_MCP_[A-Z_]+)`", one_of))
    assert len(tokens) == 3
    assert set(mcp_json) | tokens <= set(names)
    secrets = {v["name"] for v in pypi_package()["environmentVariables"] if v.get("isSecret")}
    assert secrets == {"TASK_MCP_TOKEN", "TASK_MCP_BETTER_AUTH_SESSION_TOKEN"}


def test_server_json_offers_the_streamable_http_remote_with_a_bearer_header() -> None:
    [remote] = SERVER_JSON["remotes"]
    assert remote["type"] == "streamable-http"
    assert remote["url"].endswith("/mcp")
    for variable in re.findall(r"{(\w+)}", remote["url"]):
        assert variable in remote["variables"]
    [header] = remote["headers"]
    assert header["name"] == "Authorization"
    assert header["isSecret"]


def test_readme_proves_the_pypi_package_belongs_to_the_registry_name() -> None:
    # The registry reads `mcp-name: <server name>` in the package's PyPI description (the README).
    assert f"<!-- mcp-name: {SERVER_JSON['name']} -->" in README
    assert PROJECT["readme"] == "README.md"


def test_readme_install_lines_use_the_distribution_name() -> None:
    name = PROJECT["name"]
    assert f"pipx install {name}" in README
    assert f"uvx --from {name} task-mcp serve" in README
    for line in re.findall(r"(?:pipx|pip|uv tool) install\s+'?([\w.\[\]-]+)", README):
        assert line == "." or line.split("[")[0] == name, f"install line names {line}"
