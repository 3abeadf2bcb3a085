"""Import layers of the whole tree, read with ``ast`` (every import, lazy ones included).

    base (errors, prompts, memory, metrics_basic, label_boxes, samples) <- io <- models <- predict/prompting
        <- bench / train / serve / app / demo <- cli

A module may import its own layer and the layers below; the packages of the application
layer (bench, train, serve, app, demo) do not import each other. ``medisam.client`` runs
on machines without medisam's heavy dependencies: numpy, its HTTP stack (httpx) and the
standard library.
Failures name the offending ``module:line``. Also: no import cycle among the modules of
models/, export/ and the registry (every import counted, lazy ones included).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "medisam"

#: Layer of each top-level part of the package (higher may import lower).
LAYERS = {
    "__init__": 0, "errors": 0, "prompts": 0, "memory": 0, "metrics_basic": 0, "label_boxes": 0, "samples": 0,
    "client": 0,
    "io": 1,
    "models": 2, "export": 2,
    "predict": 3, "prompting": 3,
    "bench": 4, "train": 4, "serve": 4, "app": 4, "demo": 4,
    "cli": 5, "__main__": 5,
}
#: Application-layer packages that may not import one another (each is one product).
SIBLINGS = {"bench", "train", "serve", "app", "demo"}

#: Known exceptions, each with its reason: (importer part, imported part) -> why.
ALLOWED: dict[tuple[str, str], str] = {
    # the web app is a client of the server's interactive session API (serve/interactive.py,
    # owned by the session work of issue 13; moving that logic out of serve/ is its item 1)
    ("app", "serve"): "app uses serve.interactive until the session logic leaves serve/ (issue 13 item 1)",
    # fine-tuning reads datasets with the benchmark's dataset adapters (train/data.load_images);
    # they belong in a datasets package below both (bench/datasets.py is not this change's file)
    ("train", "bench"): "train.data reads datasets through bench.datasets (move them below both)",
}
#: Third-party packages ``medisam.client`` may import besides numpy and the standard library:
#: its HTTP stack (the 3D Slicer module installs only these).
CLIENT_HTTP = {"httpx"}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def _is_module(dotted: str) -> bool:
    path = SRC.parent / dotted.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import statement in the file (relative ones resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = package.split(".")
                base = ".".join(pkg[:len(pkg) - node.level + 1] + ([base] if base else []))
            # ``from medisam.models import backends`` imports the submodule (not the package's names)
            subs = [f"{base}.{alias.name}" for alias in node.names if _is_module(f"{base}.{alias.name}")]
            found += [(sub, node.lineno) for sub in subs]
            if len(subs) < len(node.names):
                found.append((base, node.lineno))
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_layers_hold():
    problems = []
    for name, path in _modules():
        mine = _part(name)
        assert mine in LAYERS, f"{name}: add its part {mine!r} to LAYERS in {__file__}"
        for target, line in _imports(name, path):
            if not target.startswith("medisam.") and target != "medisam":
                continue
            theirs = _part(target) if target != "medisam" else "__init__"
            if theirs == mine or (mine, theirs) in ALLOWED:
                continue
            if LAYERS[theirs] > LAYERS[mine]:
                problems.append(f"{name}:{line} imports {target} (layer {theirs} is above {mine})")
            elif LAYERS[theirs] == LAYERS[mine] and {mine, theirs} <= SIBLINGS:
                problems.append(f"{name}:{line} imports {target} ({mine} and {theirs} are siblings)")
    assert not problems, "import layers broken:\n" + "\n".join(problems)


def test_allowlist_is_still_needed():
    """An exception that nothing uses any more is removed from ALLOWED."""
    used = set()
    for name, path in _modules():
        for target, _ in _imports(name, path):
            if target.startswith("medisam."):
                used.add((_part(name), _part(target)))
    assert not set(ALLOWED) - used, f"unused entries in ALLOWED: {sorted(set(ALLOWED) - used)}"


def test_client_needs_numpy_and_http_only():
    allowed_roots = {"numpy", "__future__"} | CLIENT_HTTP | set(sys.stdlib_module_names)
    problems = [f"medisam.client:{line} imports {target}"
                for target, line in _imports("medisam.client", SRC / "client.py")
                if target.split(".")[0] not in allowed_roots]
    assert not problems, "\n".join(problems)


def _graph(prefixes: tuple[str, ...]) -> dict[str, set[str]]:
    names = {name for name, _ in _modules()}
    graph: dict[str, set[str]] = {}
    for name, path in _modules():
        if not name.startswith(prefixes):
            continue
        targets = set()
        for target, _ in _imports(name, path):
            while target and target not in names:  # ``from medisam.models.x import Name``
                target = target.rpartition(".")[0]
            if target.startswith(prefixes) and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a list of modules) or None (iterative DFS, three colours)."""
    colour = dict.fromkeys(graph, 0)
    for root in graph:
        if colour[root]:
            continue
        stack = [(root, iter(sorted(graph[root])))]
        path = [root]
        colour[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(child) == 1:
                return path[path.index(child):] + [child]
            elif colour.get(child) == 0:
                colour[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph.get(child, ())))))
    return None


@pytest.mark.parametrize("prefixes", [("medisam.models", "medisam.export")])
def test_no_import_cycles_in_the_model_layer(prefixes):
    """Package ``__init__`` re-exports count too: ``medisam.models`` imports the registry."""
    cycle = _cycle(_graph(prefixes))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
