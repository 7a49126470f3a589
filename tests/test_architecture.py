"""Imports only go down: faces (api, dashboard, cli, live, health, the /metrics page, jobs) →
services → run output, notify, metrics recording → models and ground. No module of webapp/
imports jobs/, and no cycle anywhere. Every import counts, those inside functions too: an edge a
function hides is still an edge."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("webapp", "jobs")

# The layer of each module, by its dotted name's longest prefix listed here; a module may import
# its own layer's and lower layers' modules, never a higher layer's.
LAYERS = {
    "webapp.config": 0, "webapp.extensions": 0, "webapp.models": 0, "webapp.crypto": 0,
    "webapp.faults": 0, "webapp.connections": 0, "webapp.process_log": 0, "webapp.schemas": 0,
    "webapp.cron": 0, "webapp.addresses": 0, "webapp.heap": 0, "webapp.admission": 0, "webapp.vocabulary": 0, "webapp.keys": 0,
    "webapp.imageref": 0, "webapp.backoff": 0,
    "webapp.runoutput": 1, "webapp.notify": 1, "webapp.metrics": 1, "webapp.heartbeats": 1,
    "webapp.services": 2,
    "webapp.api": 3, "webapp.gate": 3, "webapp.dashboard": 3, "webapp.cli": 3, "webapp.health": 3, "webapp.metrics_page": 3,
    "jobs": 3,
    "webapp": 4,  # the app factory: puts the faces together
}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports(name: str, path: Path, known: dict) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - (node.level - 1)] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            # `from pkg import mod` depends on pkg.mod (pkg's __init__ runs, as for any import of
            # a submodule, but nothing of it is used); `from pkg import name` depends on pkg
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out |= {n for n in names if n in known and n != name}
    return out


def layer(name: str) -> int:
    best = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len)
    return LAYERS[best]


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))
    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_import_runs_upward():
    edges = graph()
    upward = sorted(f"{a} -> {b}" for a, targets in edges.items() for b in targets
                    if layer(b) > layer(a) or (a.startswith("webapp") and b.startswith("jobs")))
    assert upward == []


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_every_module_has_a_layer():
    """A new module is placed in LAYERS (and docs/architecture.md), not left to the factory's."""
    unplaced = [name for name in modules() if name != "webapp" and name.startswith("webapp")
                and max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len) == "webapp"]
    assert unplaced == []


def test_no_test_module_imports_another():
    """Fixtures live in conftest.py and helpers in helper modules (runs_api, live_client, browsing,
    receivers…): a test module imported by another would run its fixtures and tests twice over."""
    crossing = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            crossing += [f"{path.name} imports {n}" for n in names if n.startswith("test_")]
    assert crossing == []


def test_every_task_name_the_services_enqueue_is_a_function_of_jobs_tasks():
    """The services name tasks by string (they never import jobs/): each name is checked here."""
    import importlib

    from webapp import keys
    for name in keys.TASKS:
        module, _, function = name.rpartition(".")
        assert module == "jobs.tasks" and callable(getattr(importlib.import_module(module), function, None)), name
