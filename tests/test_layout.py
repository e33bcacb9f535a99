"""The core's shape: no import circle, small files, no folder holding most of the code, no built-in
plugin imported by name. Read from the source with ``ast``; nothing is imported."""
from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "mxt_sdk"
PLUGIN_PACKAGES = {"mxt_timm", "mxt_fusions", "mxt_t5", "mxt_readers", "mxt_normalizers", "mxt_faiss",
                   "mxt_baselines"}
MAX_FILE_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _imported(node: ast.Import | ast.ImportFrom, module: str) -> list[str]:
    """Absolute names of everything ``node`` imports (``from a import b`` gives ``a.b`` when that is a
    module of ours, else ``a``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: resolve against the importing module's package
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        package = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
        base = f"{package}.{base}" if base else package
    names = [f"{base}.{alias.name}" for alias in node.names]
    return [name if name in MODULES else base for name in names]


def _imports(module: str) -> set[str]:
    """Every name imported anywhere in ``module``: top level, inside functions, under TYPE_CHECKING."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    return {name for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)
            for name in _imported(node, module)}


def _edges(module: str) -> set[str]:
    """Modules of ours that importing ``module`` runs: each imported module and the sub-packages it sits
    in (their ``__init__`` runs first), except packages ``module`` itself sits in."""
    own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 2)}
    edges = set()
    for name in _imports(module):
        parts = name.split(".")
        edges.add(name)
        edges |= {".".join(parts[:i]) for i in range(2, len(parts))} - own
    return {edge for edge in edges if edge in MODULES and edge != module}


GRAPH = {module: _edges(module) for module in MODULES}


def _cycle() -> list[str] | None:
    """One import circle of the graph, as the list of modules around it, or ``None``."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for start in sorted(GRAPH):
        if start not in state and (found := visit(start)):
            return found
    return None


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_the_graph_sees_the_core():
    assert {"mxt_sdk", "mxt_sdk.extractor", "mxt_sdk.plugins.manager", "mxt_sdk.cli"} <= set(MODULES)
    assert "mxt_sdk.plugins.manager" in GRAPH["mxt_sdk.model.mxt"]
    assert "mxt_sdk.extractor" in GRAPH["mxt_sdk"]


def test_no_import_circle():
    cycle = _cycle()
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_one(monkeypatch):
    monkeypatch.setitem(GRAPH, "mxt_sdk.errors", GRAPH["mxt_sdk.errors"] | {"mxt_sdk.extractor"})
    assert _cycle() is not None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_file_over_the_limit(module):
    assert _lines(MODULES[module]) <= MAX_FILE_LINES, f"{MODULES[module]} is over {MAX_FILE_LINES} lines; split it"


def test_no_folder_holds_over_a_quarter_of_the_core():
    per_folder: Counter[str] = Counter()
    for path in MODULES.values():
        per_folder[path.parent.relative_to(ROOT).as_posix()] += _lines(path)
    total = sum(per_folder.values())
    folder, lines = max(((f, n) for f, n in per_folder.items() if f != "."), key=lambda item: item[1])
    assert lines <= total / 4, f"mxt_sdk/{folder} holds {lines} of the core's {total} lines"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_the_core_imports_no_builtin_plugin(module):
    named = {name.split(".")[0] for name in _imports(module)} & PLUGIN_PACKAGES
    assert not named, f"{module} imports the built-in plugin(s) {sorted(named)}; use the registry instead"
