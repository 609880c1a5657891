"""Imports point down the layer map only (README, Architecture): a lower layer never imports a
higher one at run time, so the process never depends on how mail comes in or goes out.

Imports under ``if TYPE_CHECKING:`` and imports inside functions (the CLI keeps its start-up
fast that way) are not dependencies of the module and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "daemon"

# Top to bottom; a module may import its own layer and the layers below it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli", "__main__"),
    ("service", "httpd", "metrics", "status", "jobs", "desk", "explain", "leases"),
    ("intake",),
    ("commands",),
    ("workflow",),
    ("replies",),
    ("app",),
    ("directory", "routing", "classify", "fields", "readtime", "sla", "feedback"),
    ("tickets", "ticket_numbers", "models", "db", "migrations", "config", "addresses", "verp",
     "states", "intents", "outcomes", "errors", "clock", "blobs", "logs", "signatures", "memory",
     "row_ids",
     "__init__"),
)


def _layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module}: not in the layer map of tests/unit/test_layers.py")


def _module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.Module) -> list[str]:
    """The daemon modules a module imports at its top level."""
    found: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("daemon"):
            if node.module == "daemon":
                found += [f"daemon.{alias.name}" for alias in node.names]
            else:
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("daemon")]
    return found


def test_every_module_is_in_the_layer_map() -> None:
    for path in PACKAGE.rglob("*.py"):
        _layer(_module_of(path))


def test_imports_point_down_only() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_of(path)
        for target in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if target in ("daemon", "daemon.__version__"):
                continue
            if _layer(target) < _layer(module):
                upward.append(f"{module} imports {target}")
    assert upward == []


def test_the_check_sees_an_upward_import() -> None:
    tree = ast.parse("from daemon.intake.pipeline import Intake\nfrom daemon import tickets\n")
    targets = _imports(tree)
    assert targets == ["daemon.intake.pipeline", "daemon.tickets"]
    assert _layer("daemon.intake.pipeline") < _layer("daemon.replies.notify")
