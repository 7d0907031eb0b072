"""The import graph: packages named after their role, dependencies pointing one way, no cycle.

Every import statement of every project module (module level or inside a function) is read
with ast, mapped to the package it names, and checked against ALLOWED; the package graph must
be acyclic; workflow modules import project code only through the sandbox's pass-through; each
package imports on its own in a fresh interpreter.
"""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROJECT = ("pageperfect", "api", "workflows", "activities", "db")
CONSUMERS = ("tests", "bench", "scripts")  # they may import anything but the worker script

# The top-level modules that everything may import: data shapes, the stage table, workflow messages, settings.
CORE = {"pageperfect.models", "pageperfect.stages", "pageperfect.messages", "pageperfect.settings"}

# package -> the packages it may import (besides itself and the standard library and third parties).
ALLOWED: dict[str, set[str]] = {
    "pageperfect": set(),
    "pageperfect.models": {"pageperfect.stages"},
    "pageperfect.stages": set(),  # the stage table: plain data, read by every layer
    "pageperfect.settings": set(),
    "pageperfect.messages": {"pageperfect.models"},
    "pageperfect.demo": set(),
    "pageperfect.sources": {"pageperfect.models"},
    # The embedders' Retry-After handling is the HTTP clients' one (sources.retry_after).
    "pageperfect.analysis": {"pageperfect.models", "pageperfect.sources"},
    "db": {"pageperfect.models", "pageperfect.stages"},
    # Deterministic workflow code: data shapes, the stage table and messages only, passed through the sandbox.
    "workflows": {"pageperfect.models", "pageperfect.stages", "pageperfect.messages"},
    "pageperfect.services": CORE | {"pageperfect.analysis", "pageperfect.sources", "db", "workflows"},
    "activities": CORE | {"pageperfect.analysis", "pageperfect.sources", "pageperfect.services", "db", "workflows"},
    # The worker construction puts the activities and workflows together.
    "pageperfect.runtime": CORE | {"db", "workflows", "activities"},
    "api": CORE | {"pageperfect.services", "pageperfect.sources", "pageperfect.runtime", "db", "workflows"},
    "pageperfect.ops": CORE | {"api", "pageperfect.runtime", "pageperfect.services", "db", "workflows"},
    "pageperfect.cli": CORE
    | {
        "pageperfect.ops",
        "pageperfect.runtime",
        "pageperfect.services",
        "pageperfect.sources",
        "pageperfect.demo",
        "db",
    },
    "worker": {"pageperfect.runtime"},  # the design card's entry point, a shim: nothing imports it
}

# Never in workflow code: the sandbox would load them for every run, and they do I/O or heavy numerics.
WORKFLOW_FORBIDDEN_LIBRARIES = {
    "numpy",
    "scipy",
    "sklearn",
    "fastapi",
    "starlette",
    "httpx",
    "asyncpg",
    "openai",
    "trafilatura",
    "lxml",
    "uvicorn",
    "typer",
    "rich",
}


def package_of(module: str) -> str | None:
    """The package a module belongs to, for the rules; None for the standard library and third parties."""
    parts = module.split(".")
    if parts[0] == "worker":
        return "worker"
    if parts[0] == "pageperfect":
        return "pageperfect" if len(parts) == 1 else f"pageperfect.{parts[1]}"
    if parts[0] in PROJECT:
        return parts[0]
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_sources() -> dict[str, str]:
    sources = {}
    for root in PROJECT:
        for path in sorted((REPO / root).rglob("*.py")):
            sources[module_name(path)] = path.read_text(encoding="utf-8")
    sources["worker"] = (REPO / "worker.py").read_text(encoding="utf-8")
    return sources


def consumer_sources() -> dict[str, str]:
    return {
        module_name(p): p.read_text(encoding="utf-8") for root in CONSUMERS for p in sorted((REPO / root).rglob("*.py"))
    }


@functools.cache  # the checks read the same sources several times: each is parsed once
def imports_of(module: str, source: str) -> tuple[tuple[str, int, bool], ...]:
    """(imported module, line, inside `workflow.unsafe.imports_passed_through()`) for every import."""
    tree = ast.parse(source)
    passed = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.With) and any(
            "imports_passed_through" in ast.unparse(item.context_expr) for item in node.items
        ):
            passed |= {id(inner) for inner in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in passed) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")  # a relative import stays relative: the rules refuse it
            # `from pageperfect import models` names the module pageperfect.models
            found += [
                (f"{base}.{alias.name}" if base == "pageperfect" else base, node.lineno, id(node) in passed)
                for alias in node.names
            ]
    return tuple(found)


def violations(sources: dict[str, str]) -> list[str]:
    """Every import that breaks a rule, as 'module:line imports target (why)'."""
    problems = []
    for module, source in sources.items():
        own = package_of(module)
        defines_workflow = "@workflow.defn" in source
        for target, line, passed_through in imports_of(module, source):
            if target.startswith("."):
                problems.append(f"{module}:{line} imports {target} (relative: name the package)")
                continue
            top = target.split(".")[0]
            if own == "workflows" and top in WORKFLOW_FORBIDDEN_LIBRARIES:
                problems.append(f"{module}:{line} imports {target} (not in workflow code)")
            theirs = package_of(target)
            if theirs is None or theirs == own:
                if theirs == own and own == "workflows" and defines_workflow and not passed_through:
                    problems.append(f"{module}:{line} imports {target} outside imports_passed_through()")
                continue
            if theirs == "worker":
                problems.append(f"{module}:{line} imports the worker.py script (use pageperfect.runtime.worker)")
            elif theirs not in ALLOWED.get(own, set()):
                problems.append(f"{module}:{line} imports {target} ({own} may not depend on {theirs})")
            elif own == "workflows" and defines_workflow and not passed_through:
                problems.append(f"{module}:{line} imports {target} outside imports_passed_through()")
    return problems


def package_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, source in sources.items():
        own = package_of(module)
        edges = graph.setdefault(own, set())
        for target, _, _ in imports_of(module, source):
            theirs = package_of(target)
            if theirs is not None and theirs != own:
                edges.add(theirs)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


# ---------------------------------------------------------------- the checks


def test_every_import_points_the_allowed_way():
    sources = project_sources()
    assert {package_of(m) for m in sources} == set(ALLOWED), "a package without rules, or rules without a package"
    assert violations(sources) == []


def test_the_package_graph_has_no_cycle():
    graph = package_graph(project_sources())
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_nothing_imports_the_worker_script():
    users = [
        f"{module}:{line}"
        for module, source in {**project_sources(), **consumer_sources()}.items()
        if module != "worker"
        for target, line, _ in imports_of(module, source)
        if package_of(target) == "worker"
    ]
    assert users == []


def test_the_checks_catch_a_forbidden_import_and_a_cycle():
    """The rules are not vacuous: a service importing the API breaks them, and so does a cycle."""
    sources = project_sources()
    broken = dict(sources)
    broken["pageperfect.services.results"] += "\nfrom api.app import create_app\n"
    assert any("pageperfect.services may not depend on api" in p for p in violations(broken))
    looped = dict(sources)
    looped["db.queries"] += "\nfrom pageperfect.services.results import build_result\n"
    assert find_cycle(package_graph(looped)) is not None
    unpassed = dict(sources)
    unpassed["workflows.webhook"] += "\nfrom pageperfect.messages import TuneRequest\n"
    assert any("outside imports_passed_through" in p for p in violations(unpassed))


PACKAGES = [
    "pageperfect.models",
    "pageperfect.stages",
    "pageperfect.messages",
    "pageperfect.settings",
    "pageperfect.sources",
    "pageperfect.analysis",
    "db",
    "workflows",
    "pageperfect.services",
    "activities",
    "pageperfect.runtime",
    "api",
    "pageperfect.ops",
    "pageperfect.cli",
]

# What importing a package must not load: the analysis is plain functions, workflow code stays light.
MUST_NOT_LOAD = {
    "pageperfect.stages": {"temporalio", "pydantic", "pageperfect.models"},
    "pageperfect.analysis": {"temporalio", "asyncpg", "fastapi", "db", "api", "workflows", "activities"},
    "pageperfect.sources": {"temporalio", "asyncpg", "fastapi", "db", "api", "workflows", "activities"},
    "workflows": {"numpy", "sklearn", "fastapi", "asyncpg", "db", "api", "activities"},
    "pageperfect.services": {"api", "pageperfect.cli", "pageperfect.ops", "worker"},
}

_IMPORT_ALL = """
import importlib, json, pkgutil, sys
name = sys.argv[1]
package = importlib.import_module(name)
for found in pkgutil.walk_packages(getattr(package, "__path__", []), name + "."):
    if not found.name.endswith("__main__"):
        importlib.import_module(found.name)
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} | set(sys.modules))))
"""


def _import_alone(package: str) -> tuple[str, subprocess.CompletedProcess]:
    return package, subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, package], cwd=REPO, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow  # one fresh interpreter per package: about 15 s of CPU
def test_each_package_imports_on_its_own():
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(pool.map(_import_alone, PACKAGES))
    for package, done in results.items():
        assert done.returncode == 0, f"{package} does not import on its own:\n{done.stderr[-2000:]}"
        loaded = set(json.loads(done.stdout.splitlines()[-1]))
        unwanted = MUST_NOT_LOAD.get(package, set()) & loaded
        assert not unwanted, f"importing {package} loads {sorted(unwanted)}"
