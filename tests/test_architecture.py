"""The module map of docs/architecture.md holds: no import cycle in the package (imports
inside functions count), and no function or class grows past the size limits."""

import ast
from pathlib import Path

import napari_dip

PACKAGE = Path(napari_dip.__file__).parent
#: Longest function and class, in lines (docs/architecture.md).
MAX_FUNCTION_LINES = 80
MAX_CLASS_LINES = 300


def _modules() -> dict[str, ast.Module]:
    trees = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        trees[name] = ast.parse(path.read_text(encoding="utf-8"))
    return trees


def _imports(name: str, tree: ast.Module, modules) -> set[str]:
    """Package modules ``name`` imports anywhere (module level, functions, TYPE_CHECKING)."""
    package = name if name in ("napari_dip", "napari_dip.solvers") else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found.update(c for c in candidates if c in modules and c != name)
    found.discard("napari_dip")  # the package's lazy __init__ (for __version__)
    return found


def test_no_module_imports_another_that_imports_it_back():
    modules = _modules()
    graph = {name: _imports(name, tree, modules) for name, tree in modules.items()}
    assert "napari_dip.drivers" in graph["napari_dip.api"] and graph["napari_dip.drivers"]
    cycles = []

    def visit(node, path, done):
        for nxt in graph[node]:
            if nxt in path:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt, path + [nxt], done)
        done.add(node)

    done: set[str] = set()
    for name in graph:
        if name not in done:
            visit(name, [name], done)
    assert not cycles, cycles


def test_functions_and_classes_stay_small():
    too_long = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) \
                    else MAX_FUNCTION_LINES
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    too_long.append(f"{name}.{node.name}: {lines} lines (limit {limit})")
    assert not too_long, too_long


def test_the_widget_module_holds_no_engine_rule():
    """The widget reads the task and method registries instead of comparing names."""
    source = (PACKAGE / "_widget.py").read_text() + (PACKAGE / "_panels.py").read_text() \
        + (PACKAGE / "_settings.py").read_text()
    for literal in ('== "inpaint"', '== "super_resolution"', '== "deblur"',
                    '== "flash_no_flash"', "SIGMA_TASKS"):
        assert literal not in source, literal
