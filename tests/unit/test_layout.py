"""The shape of the house: no import circle among the ``processor`` modules (imports inside
functions and under ``TYPE_CHECKING`` included; one known circle in ``processor/serve/`` aside), nothing outside ``processor/cli/`` imports the
CLI (but the serve command, for the shared options), and no CLI module over 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "processor"
MAX_CLI_LINES = 500
SERVE_CIRCLE = {"processor.serve.app", "processor.serve.routes", "processor.serve.health"}
"""The one circle left (issue 14): ``create_app`` imports the routes, which import ``app``'s
config types. Imports among these three are not checked until ``processor/serve/`` is reworked;
remove this set then."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The ``processor`` modules that the module ``name`` imports, anywhere in its body;
    ``from package import x`` is an import of ``package.x`` when that is a module, else of
    ``package``. The implicit import of a module's parent packages is not counted."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imported(name, path, known) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path that ends where it starts, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_the_graph_sees_imports_inside_functions() -> None:
    graph = import_graph()
    assert "processor.cli.options" in graph["processor.serve.cli"]  # imported inside cmd_serve
    assert "processor.cli.read" in graph["processor.cli.app"]  # from processor.cli import read
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_in_processor() -> None:
    graph = {name: deps - SERVE_CIRCLE if name in SERVE_CIRCLE else deps for name, deps in import_graph().items()}
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_nothing_below_the_cli_imports_it() -> None:
    graph = import_graph()
    outside = {
        (name, dep) for name, deps in graph.items() for dep in deps
        if dep.startswith("processor.cli") and not name.startswith("processor.cli")
    }
    assert outside <= {
        ("processor.serve.cli", "processor.cli.options"),  # the serve command: the shared options
        ("processor.serve.cli", "processor.cli.render"),
    }, outside


def test_no_cli_module_over_500_lines() -> None:
    sizes = {p.name: len(p.read_text().splitlines()) for p in (PACKAGE / "cli").glob("*.py")}
    assert sizes and max(sizes.values()) <= MAX_CLI_LINES, sizes
