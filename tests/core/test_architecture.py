"""The import layering, checked on the source (every import statement, including those inside functions):

pages → sculpt_core/app → sculpt_core/domains/* → sculpt_core/core. The core imports no domain and no app
module, no domain imports another, streamlit is imported only under sculpt_core/app (and by the pages), and
no two files import each other in a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "sculpt_core"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path], source: str | None = None) -> set[str]:
    """Every module ``path`` imports (absolute or relative, at any depth), resolved to the most specific
    sculpt_core module; external modules are kept by their top-level name."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: set[str] = set()
    text = path.read_text(encoding="utf-8") if source is None else source
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.add(alias.name if alias.name in modules else alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base == "__future__":
                continue
            if not base.startswith("sculpt_core"):
                out.add(base.split(".")[0])
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in modules else base)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) for name, path in modules.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 2 and parts[1] == "domains":
        return f"domains.{parts[2]}"
    return parts[1] if len(parts) > 1 else "root"


def test_the_parser_sees_function_level_and_relative_imports():
    """The checker itself: imports inside functions, relative imports and ``from pkg import module``."""
    src = ("import streamlit as st\n"
           "def f():\n    from sculpt_core.domains.grid import env\n    from ..app import state\n"
           "    from . import labels\n")
    deps = _imports(PKG / "core" / "algebra.py", _modules(), source=src)
    assert {"streamlit", "sculpt_core.domains.grid.env", "sculpt_core.core.labels"} <= deps
    assert any(d.startswith("sculpt_core.app") for d in deps)


def test_core_imports_no_domain_and_no_app_module():
    bad = {(m, d) for m, deps in _graph().items() if _layer(m) == "core"
           for d in deps if d.startswith(("sculpt_core.domains", "sculpt_core.app", "sculpt_core.cli"))}
    assert not bad, sorted(bad)


def test_no_domain_imports_another_or_the_app():
    bad = set()
    for m, deps in _graph().items():
        layer = _layer(m)
        if not layer.startswith("domains."):
            continue
        for d in deps:
            other = _layer(d) if d.startswith("sculpt_core.") else None
            if other and (other == "app" or other == "cli" or (other.startswith("domains") and other != layer)):
                bad.add((m, d))
    assert not bad, sorted(bad)


def test_streamlit_only_in_the_app_package():
    users = {m for m, deps in _graph().items() if "streamlit" in deps}
    assert users and all(_layer(m) == "app" for m in users), sorted(users)


def test_pages_are_thin_and_go_through_the_app_layer():
    """Pages import streamlit, the app layer and figure/metric modules, never the CLI."""
    modules = _modules()
    for page in sorted((ROOT / "pages").glob("*.py")) + [ROOT / "app.py"]:
        tree = ast.parse(page.read_text(encoding="utf-8"))
        names = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any(n.endswith(".cli") or n == "sculpt_core.cli" for n in names), (page.name, names)
    assert modules


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one file (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_files():
    graph = {m: {d for d in deps if d != m} for m, deps in _graph().items()}
    assert not _cycles(graph), _cycles(graph)


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("name", ["grid", "molecules"])
def test_every_domain_is_registered_and_has_a_cli(name):
    from sculpt_core.domains import DOMAINS

    packages = {d.package for d in DOMAINS.values()}
    assert f"sculpt_core.domains.{name}" in packages
    assert (PKG / "domains" / name / "cli.py").is_file()
