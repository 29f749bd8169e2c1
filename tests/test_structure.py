"""The import graph of pixelmix and its scikit-image plugin has no cycle.

Every import statement counts, also those inside functions: an import that
hides in a function to dodge a cycle is still a cycle (DESIGN.md, "Layers").
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"pixelmix": ROOT / "pixelmix", "pixelmix_skimage": ROOT / "plugins" / "pixelmix_skimage"}


def _modules() -> dict[str, Path]:
    found = {}
    for top, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([top, *parts])] = path
    return found


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of a (possibly relative) import made in ``module``."""
    if level == 0:
        return name or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def import_graph() -> dict[str, set[str]]:
    """``{module: {modules of this project it imports}}``, from every import statement."""
    modules = _modules()
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node.level, node.module)
                # "from a import b" imports the module a.b when there is one, else a.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:  # "import a.b.c" of a name inside a module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "pixelmix.dispatch" in graph["pixelmix.mixer"]
    assert "pixelmix.backends.cpu" in graph["pixelmix.dispatch"]  # imported inside apply_steps
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_lower_layers_import_no_higher_one():
    """The core's floors: kernels < plan, lowering < backends < dispatch < user objects."""
    graph = import_graph()
    floors = [
        ("pixelmix.kernels", {"pixelmix.plan", "pixelmix.lowering", "pixelmix.backends", "pixelmix.dispatch"}),
        ("pixelmix.plan", {"pixelmix.lowering", "pixelmix.backends", "pixelmix.dispatch"}),
        ("pixelmix.lowering", {"pixelmix.backends", "pixelmix.dispatch"}),
        ("pixelmix.backends", {"pixelmix.dispatch", "pixelmix.mixer", "pixelmix.ops"}),
        ("pixelmix.dispatch", {"pixelmix.mixer", "pixelmix.ops", "pixelmix.learn"}),
    ]
    for floor, above in floors:
        for module, imports in graph.items():
            if module == floor or module.startswith(floor + "."):
                bad = {i for i in imports if any(i == a or i.startswith(a + ".") for a in above)}
                assert not bad, f"{module} imports {sorted(bad)}, which sit above it"
