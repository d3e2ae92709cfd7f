"""The package keeps the shape DESIGN §1 draws: small modules, one-way imports, MCP at the edge.

Imports are read with `ast`, not by importing. Imports under `if TYPE_CHECKING:` are left out:
they never run, and annotations may point anywhere. Imports inside functions count: a lazy
import is still a dependency, and a cycle through one is still a tangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "task_mcp"
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "migrations" in path.relative_to(PACKAGE).parts:
            continue  # Alembic's revision files are data, not modules of the package
        parts = ["task_mcp", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    """Every module `path` imports at run time (absolute names; relative ones resolved)."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                names.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module:
                names.add(child.module)
                names.update(f"{child.module}.{alias.name}" for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return names


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {n for n in _imports(path) if n in modules and n != name} for name, path in modules.items()}


def test_no_module_of_the_package_passes_400_lines() -> None:
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"split these along their concerns (DESIGN §1): {long}"


def test_the_modules_of_the_package_import_each_other_without_a_cycle() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def walk(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                walk(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    # The package's own __init__ re-exports lazily (`__getattr__`), so it imports none of them.
    assert cycles == []


def test_only_server_and_http_import_the_mcp_server() -> None:
    users = {name for name, path in _modules().items() if any(n.startswith("mcp.server") for n in _imports(path))}
    assert users <= {"task_mcp.server", "task_mcp.http"}


def test_the_service_never_imports_mcp() -> None:
    service = {name: path for name, path in _modules().items() if name.startswith("task_mcp.service")}
    assert service, "task_mcp/service/ not found"
    offenders = {
        name for name, path in service.items() if any(n == "mcp" or n.startswith("mcp.") for n in _imports(path))
    }
    assert offenders == set()


def test_the_package_declares_its_public_api() -> None:
    import task_mcp

    assert task_mcp.__version__
    missing = [name for name in task_mcp.__all__ if not hasattr(task_mcp, name)]
    assert missing == []
