"""The house's layers: imports only run downward, and the folds stay pure.

cli -> serve -> ops -> runtime -> store, settings, producers -> folds -> errors -> schemas. Every
import counts, in-function ones too (``ast.walk``), so a circle cannot hide in a function body.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

RANKS: dict[str, float] = {
    "schemas": 0,
    "processor.errors": 1,
    "processor.urls": 1.5,
    "processor.folds": 2,
    "processor.store": 3,
    "processor.settings": 3,
    "producers": 3,
    "processor.runtime": 4,
    "processor.ops": 5,
    "processor.cli": 6,
    "processor.serve": 5.5,
    "processor.queries": 6,
}
"""Layer of each package (or top-level module): a module may import its own package and lower
layers only."""

FORBIDDEN = {
    "processor.folds": ("faust", "mode", "aiokafka", "sqlite3", "aiohttp", "fastapi"),
    "processor.store": ("faust", "mode", "aiokafka", "aiohttp", "fastapi"),
}


def _layer(module: str) -> str | None:
    best = None
    for name in RANKS:
        if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best)):
            best = name
    return best


def _modules() -> Iterator[tuple[str, Path]]:
    for top in ("processor", "schemas", "producers"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _imports(path: Path, module: str) -> Iterator[tuple[str, int]]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            yield target, node.lineno
            for alias in node.names:  # from processor import ops -> processor.ops
                yield f"{target}.{alias.name}", node.lineno


MODULES = dict(_modules())


def _resolved(target: str) -> str | None:
    """The axmon module ``target`` names (the longest known prefix), or None for a library."""
    while target:
        if target in MODULES:
            return target
        target = target.rpartition(".")[0]
    return None


def test_every_module_has_a_layer() -> None:
    assert [m for m in MODULES if m not in ("processor",) and _layer(m) is None] == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_run_downward(module: str) -> None:
    own = _layer(module)
    if own is None:
        return
    wrong = []
    for target, line in _imports(MODULES[module], module):
        banned = FORBIDDEN.get(own, ())
        if target.split(".")[0] in banned:
            wrong.append(f"line {line}: {target} (no {target.split('.')[0]} in {own})")
        found = _resolved(target)
        layer = _layer(found) if found else None
        if layer is None or layer == own:
            continue
        if RANKS[layer] >= RANKS[own]:
            wrong.append(f"line {line}: {found} ({layer}, layer {RANKS[layer]}) from layer {RANKS[own]}")
    wrong = list(dict.fromkeys(wrong))
    assert wrong == [], f"{module} imports upward or what it must not:\n" + "\n".join(wrong)


def test_no_import_circles() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, path in MODULES.items():
        for target, _ in _imports(path, module):
            found = _resolved(target)
            if found and found != module and found not in _packages_of(module):
                graph[module].add(found)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join([*stack[stack.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def _packages_of(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_over_500_lines(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= 500, f"{module} has {lines} lines"
