"""The CLI's house rules, beyond the layers (``test_layers``): nothing below the command line
imports it (but the serve command, for the shared options), and inside ``processor/cli/`` a
command module imports no other command module and no private name; imports inside functions
count too."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "processor" / "cli"
SHARED = {"processor.cli.options", "processor.cli.render"}
"""What every command module may import from the CLI package."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[tuple[str, str]]:
    """``(module, name)`` for every ``from module import name`` (``name`` empty for a plain
    ``import module``), anywhere in the file."""
    found: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update((alias.name, "") for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.update((node.module, alias.name) for alias in node.names)
    return found


def test_nothing_below_the_cli_imports_it() -> None:
    outside = {
        (module_name(p), source)
        for top in ("processor", "schemas", "producers")
        for p in (ROOT / top).rglob("*.py") if CLI not in p.parents
        for source, _ in imports(p) if source == "processor.cli" or source.startswith("processor.cli.")
    }
    assert outside == set(), outside


def test_command_modules_share_only_options_and_render() -> None:
    wrong = []
    for path in sorted(CLI.glob("*.py")):
        name = module_name(path)
        if name in SHARED or path.stem in ("__init__", "__main__", "app"):
            continue
        for source, imported in imports(path):
            if source.startswith("processor.cli") and source not in SHARED:
                wrong.append(f"{name} imports {source}")
            if source.startswith("processor.") and imported.startswith("_") and imported != "__future__":
                wrong.append(f"{name} imports the private {source}.{imported}")
    assert wrong == []


def test_every_command_module_registers_the_same_way() -> None:
    for path in sorted(CLI.glob("*.py")):
        if module_name(path) in SHARED or path.stem in ("__init__", "__main__", "app"):
            continue
        tree = ast.parse(path.read_text())
        registers = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "register"]
        assert len(registers) == 1 and [a.arg for a in registers[0].args.args] == ["subparsers"], path.name
