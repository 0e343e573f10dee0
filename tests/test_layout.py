"""The shape of the code: dependencies point one way, with no import cycles - not even through imports inside
functions - read from the source itself (the AST), so a new file cannot quietly break the layering."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.paths import REPO

PACKAGES = ("model", "train", "kernels")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}


def _imports(name: str) -> set[str]:
    """Every project module `name` imports, at module level or inside a function (not under TYPE_CHECKING),
    and the packages whose __init__ such an import runs."""
    found: set[str] = set()
    is_package = MODULES[name].name == "__init__.py"
    tree = ast.parse(MODULES[name].read_text())
    for block in ast.walk(tree):  # `if TYPE_CHECKING:` imports are for type checkers; they never run
        if isinstance(block, ast.If) and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            block.body = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            targets = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module for a in node.names
            ]
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{name}: relative import; the project imports absolutely")
        for target in targets:
            parts = target.split(".")
            found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(MODULES)
    found.discard(name)
    if not is_package:  # a package's own __init__ is run before its modules, not imported by them
        found -= {p for p in found if name.startswith(p + ".") and MODULES[p].name == "__init__.py"}
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def _closure(name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        for dep in GRAPH[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def test_no_import_cycles() -> None:
    cycles = sorted(name for name in GRAPH if name in _closure(name))
    assert not cycles, f"modules that import themselves through others: {cycles}"


def test_the_graph_is_read() -> None:
    """The checks below would pass vacuously on an empty graph: these known edges must be found."""
    assert "train.loop" in GRAPH["train.pretrain"] and "kernels.flash" in GRAPH["model.attention"]
    assert "train.planner.probe" in GRAPH["train.planner.timeplan"]  # an import inside a function


@pytest.mark.parametrize(
    "module, forbidden",
    [
        ("train.data.loader", "train.data.prepare"),  # reading prepared data never needs the writer
        ("train.planner.plan", "model.gpt"),  # the planner is arithmetic on configs
        ("train.planner.scaling", "model.gpt"),
        ("train.planner.table", "model.gpt"),
        ("train.cli", "model.gpt"),  # building the command line loads no model (nor torch)
    ],
)
def test_dependencies_point_one_way(module: str, forbidden: str) -> None:
    assert forbidden not in _closure(module) | {module}


def test_rooms_keep_to_their_side() -> None:
    for name, deps in GRAPH.items():
        if name.startswith("kernels"):
            assert not {d for d in deps if d.startswith(("model", "train"))}, name  # kernels never imports model
        if name.startswith("model"):
            assert not {d for d in deps if d.startswith("train")}, name  # the model does no training
        if name.startswith(("train.bench", "kernels.bench")):
            assert not {d for d in deps if d.startswith("train.cli")}, name  # benchmarks are not commands


def test_pure_configs_import_no_torch() -> None:
    """The command line reads these dataclasses' fields to build its flags; none of them may pull in torch."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import model.config, train.recipe, train.finetune.config, train.planner.plan, train.cli\n"
        "train.cli.build_parser()\n"
        "assert 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
