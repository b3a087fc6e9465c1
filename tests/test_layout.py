"""The package's layout: no import cycles, light leaf modules, one place for each concern."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys

from lib import paths

LIB = paths.repo_root() / "lib"


def module_name(path) -> str:
    rel = path.relative_to(LIB.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text()) for p in sorted(LIB.rglob("*.py"))}


def resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def with_ancestors(name: str) -> set[str]:
    """``a.b.c`` and the packages ``a.b`` and ``a`` whose __init__ importing it runs."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)}


def import_graph() -> dict[str, set[str]]:
    """Edges of lib's modules: imports at any depth (function-level included), importlib
    calls with literal names, and the packages each imported module implies."""
    mods = modules()
    graph: dict[str, set[str]] = {}
    for name, tree in mods.items():
        is_package = (LIB.parent / name.replace(".", "/") / "__init__.py").is_file()
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = resolve(name, is_package, node)
                targets.add(base)
                targets |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods}
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module"
                  and node.args and isinstance(node.args[0], ast.Constant)):
                targets.add(node.args[0].value)
        edges = set()
        for target in targets:
            edges |= {t for t in with_ancestors(target) if t in mods}
        graph[name] = edges - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_graph_sees_the_edges_it_should():
    graph = import_graph()
    assert "lib.metrics.arrays" in graph["lib.metrics.ddcs"]
    assert {"lib.metrics", "lib"} <= graph["lib.metrics.ddcs"]        # implied packages
    assert "lib.stages.classifiers" in graph["lib.stages.transfer"]


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_lib_imports_lib_at_module_level_only():
    """A function-level import of lib would hide a cycle; only optional third-party packages
    (torchvision, PIL, lpips, papermill, ...) are imported where they are used."""
    late = []
    for name, tree in modules().items():
        for func in ast.walk(tree):
            if isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(func):
                    if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "")
                                                              .startswith("lib")):
                        late.append(f"{name}.{func.name}")
                    elif isinstance(node, ast.Import) and any(a.name.startswith("lib")
                                                              for a in node.names):
                        late.append(f"{name}.{func.name}")
    assert late == []


def test_layers_run_one_way():
    """Algorithms never reach up into the stages, the runner or the command line."""
    graph = import_graph()
    upper = ("lib.stages", "lib.run", "lib.cli")
    for name, edges in graph.items():
        if not name.startswith(upper) and name != "lib":
            assert not {e for e in edges if e.startswith(upper)}, name


def test_ddcs_loads_light():
    code = ("import sys, json, lib.metrics.ddcs; print(json.dumps(sorted(sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                       text=True, check=True).stdout)
    heavy = [m for m in loaded if m.split(".")[0] in ("kornia", "pandas")
             or m.startswith(("lib.training", "lib.transfer", "lib.stages", "lib.attacks"))]
    assert heavy == []


def test_environment_is_read_in_one_module():
    readers = [p.relative_to(LIB).as_posix() for p in LIB.rglob("*.py")
               if re.search(r"os\.environ|os\.getenv", p.read_text())]
    assert readers == ["paths.py"]


def test_no_library_function_reseeds_the_global_rng():
    """torch.manual_seed only inside lib.seeding (forked there) and the notebooks' setup."""
    offenders = [p.relative_to(LIB).as_posix() for p in LIB.rglob("*.py")
                 if "manual_seed(" in re.sub(r"Generator\(\)\.manual_seed\(", "", p.read_text())
                 and p.name != "seeding.py"]
    assert offenders == []


def test_errors_are_recognised_by_type():
    """No ``except`` clause reads an error's message to decide what it is."""
    for p in LIB.rglob("*.py"):
        assert not re.search(r"in str\(err\)|str\(e\)\s*(==|in)", p.read_text()), p
