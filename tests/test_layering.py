"""ARCHITECTURE.md's folder table, enforced: which of our packages each folder may import (at
module level or inside a function), and that the functional core knows no engine or client."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"config", "operators", "models", "connectors", "flows", "api"}
MAY_IMPORT = {
    "config": set(),
    "operators": {"config"},
    "models": {"operators", "config"},
    "connectors": {"config"},
    "flows": OURS,
    "api": {"config", "connectors"},  # the HTTP shell reads Redis only: never the engine or the models
}
# "Nothing in operators/ knows Kafka, Redis or Bytewax exists."
ENGINE_AND_CLIENTS = {"bytewax", "confluent_kafka", "redis", "prometheus_client"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", sorted(MAY_IMPORT))
def test_a_folder_imports_only_what_the_architecture_allows(folder):
    assert modules(folder), folder
    wrong = {str(p.relative_to(ROOT)): sorted((imported_roots(p) & OURS) - MAY_IMPORT[folder] - {folder})
             for p in modules(folder)}
    assert not {k: v for k, v in wrong.items() if v}


def test_the_functional_core_knows_no_engine_or_client():
    wrong = {str(p.relative_to(ROOT)): sorted(imported_roots(p) & ENGINE_AND_CLIENTS) for p in modules("operators")}
    assert not {k: v for k, v in wrong.items() if v}


def test_the_checker_sees_an_import_inside_a_function(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def g():\n    from flows.generator import generate\n    import redis.client\n")
    assert imported_roots(f) == {"flows", "redis"}


def operator_imports(path: Path) -> set[str]:
    """The ``operators.*`` modules ``path`` imports anywhere (type-checking blocks and functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("operators."):
            found.add(node.module)
    return found


def test_the_functional_core_has_no_import_cycle():
    graph = {f"operators.{p.stem}": operator_imports(p) for p in modules("operators")}

    def reaches(start: str, goal: str, seen: set) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert not [m for m in graph if reaches(m, m, {m})]
