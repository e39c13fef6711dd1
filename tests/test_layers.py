"""jaxssl's import layers, checked on the source with ``ast`` (docs/architecture.md).

Lowest first::

    ops, shared (_extras, cli_errors, compile_cache, exit_codes, host_malloc, output_paths)
      -> losses, models, data
      -> methods -> train -> eval, export -> entry points (``__main__.py``)

A module may import its own package and any package of a lower layer; nothing imports upward,
the siblings of one layer do not import each other (except the shared modules and ``ops``, the
bottom: ``losses``, ``models`` and ``data`` may use them), and the package graph has no cycle.
``__main__.py`` files are entry points and may import anything; ``jaxssl/__init__.py`` holds the
version only and may import nothing of jaxssl, so ``import jaxssl.losses`` stays light.
Outside ``jaxssl/methods/`` no code compares a method name (``"dino"``, ``"excb"``...) with a
variable named like a method or name: a method's special cases live in its own class. Imports
sit at the top of a file, except the heavy optional dependencies of ``LAZY_IMPORTS_OK``.
"""

from __future__ import annotations

import ast
import dataclasses
import pathlib
from collections import Counter
from collections.abc import Iterable, Iterator

import pytest

import jaxssl

PACKAGE_ROOT = pathlib.Path(jaxssl.__file__).resolve().parent

# package -> layer, lowest 0. The top-level modules are one package, "shared".
LAYER = {"ops": 0, "shared": 0, "losses": 1, "models": 1, "data": 1, "methods": 2, "train": 3,
         "eval": 4, "export": 4}
SHARED_MODULES = {"_extras", "cli_errors", "compile_cache", "exit_codes", "host_malloc",
                  "output_paths"}
# Siblings of one layer may import each other only here (the bottom layer's two halves).
SAME_LAYER_OK = {("ops", "shared"), ("shared", "ops")}
ENTRY_POINT = "__main__"
ROOT_INIT = "jaxssl"  # jaxssl/__init__.py: imports nothing of jaxssl

# Names of methods (and of KoLeo, a method-level switch); compared only inside jaxssl/methods/.
METHOD_NAMES = frozenset({"dino", "ibot", "msn", "pmsn", "carp", "excb", "koleo"})
NAME_LIKE = ("method", "name")
METHOD_NAME_COMPARISON_OK = ("methods",)  # packages allowed to branch on method names

# Optional or slow dependencies a function may import lazily, each with a comment saying why.
LAZY_IMPORTS_OK = frozenset({"torch", "matplotlib", "tensorflow", "tensorflow_datasets",
                             "tensorboardX"})

# Known offenders: none since the hooks branch (the final evaluation moved to the eval layer
# behind on_log/on_end callbacks; methods own their special cases through hooks). The lists stay
# for a change that must land in steps; an entry that no longer occurs fails the test, so they
# cannot go stale, and any offender not listed here fails it too.
# (module, imported module) pairs: upward imports and the cycles they close.
HOOKS_BRANCH_UPWARD_IMPORTS = ()
# (module, line text) of method-name comparisons.
HOOKS_BRANCH_METHOD_COMPARISONS = ()
# (module, imported module) pairs of imports inside functions.
HOOKS_BRANCH_LAZY_IMPORTS = ()


@dataclasses.dataclass(frozen=True)
class Import:
    """One ``import`` of a jaxssl module: where it is and what it names."""

    path: str  # e.g. "jaxssl/train/loop.py"
    line: int
    target: str  # dotted module, e.g. "jaxssl.eval.knn"
    in_function: bool


def module_name(path: str) -> str:
    """``jaxssl/eval/knn.py`` -> ``jaxssl.eval.knn``; a package's ``__init__`` -> the package.

    >>> module_name("jaxssl/eval/__init__.py"), module_name("jaxssl/ops/kmeans.py")
    ('jaxssl.eval', 'jaxssl.ops.kmeans')
    """
    parts = path[:-len(".py")].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(module: str) -> str:
    """The layer package of a dotted jaxssl module: ``jaxssl.train.loop`` -> ``train``, the
    top-level shared modules -> ``shared``, ``jaxssl`` itself -> ``jaxssl``.

    >>> package_of("jaxssl.train.loop"), package_of("jaxssl.cli_errors"), package_of("jaxssl")
    ('train', 'shared', 'jaxssl')
    """
    parts = module.split(".")
    if len(parts) == 1:
        return ROOT_INIT
    return "shared" if parts[1] in SHARED_MODULES else parts[1]


def _resolve(node: ast.ImportFrom, path: str) -> str:
    """The absolute module of a (possibly relative) ``from X import ...``."""
    if not node.level:
        return node.module or ""
    base = module_name(path).split(".")
    if not path.endswith("__init__.py"):
        base = base[:-1]
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _function_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes that sit inside a function body."""
    inside = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inside.update(id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import,
                                                                         ast.ImportFrom)))
    return inside


def imports_of(source: str, path: str) -> Iterator[Import]:
    """Every import in ``source`` (the file at ``path``), jaxssl or not, one per module named:
    ``from jaxssl import exit_codes`` names ``jaxssl.exit_codes``."""
    tree = ast.parse(source, filename=path)
    inside = _function_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name, id(node) in inside)
        elif isinstance(node, ast.ImportFrom):
            module = _resolve(node, path)
            names = ([f"{module}.{a.name}" for a in node.names] if module == "jaxssl"
                     else [module])
            for target in names:
                yield Import(path, node.lineno, target, id(node) in inside)


def upward_imports(imports: Iterable[Import]) -> list[Import]:
    """The imports of jaxssl modules that break the layer order (see the module docstring)."""
    bad = []
    for imp in imports:
        if not (imp.target == "jaxssl" or imp.target.startswith("jaxssl.")):
            continue
        src_module = module_name(imp.path)
        if src_module.endswith(f".{ENTRY_POINT}"):
            continue
        src, dst = package_of(src_module), package_of(imp.target)
        if src == ROOT_INIT:
            bad.append(imp)  # jaxssl/__init__.py stays free of jaxssl imports
        elif src == dst or dst == ROOT_INIT:
            continue
        elif dst not in LAYER or src not in LAYER:
            bad.append(imp)  # a new package: give it a layer above
        elif LAYER[dst] > LAYER[src] or (LAYER[dst] == LAYER[src]
                                         and (src, dst) not in SAME_LAYER_OK):
            bad.append(imp)
    return bad


def package_cycles(imports: Iterable[Import]) -> list[list[str]]:
    """The cycles of the package import graph (entry points left out), each once, as the
    packages along it starting from the smallest name."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if not imp.target.startswith("jaxssl.") or module_name(imp.path).endswith(ENTRY_POINT):
            continue
        src, dst = package_of(module_name(imp.path)), package_of(imp.target)
        if src != dst:
            graph.setdefault(src, set()).add(dst)
    cycles = set()

    def walk(node: str, trail: list[str]) -> None:
        for nxt in sorted(graph.get(node, ())):
            if nxt in trail:
                loop = trail[trail.index(nxt):]
                start = loop.index(min(loop))
                cycles.add(tuple(loop[start:] + loop[:start]))
            else:
                walk(nxt, trail + [nxt])

    for start in sorted(graph):
        walk(start, [start])
    return [list(c) for c in sorted(cycles)]


def _is_name_like(node: ast.AST) -> bool:
    name = (node.id if isinstance(node, ast.Name) else node.attr
            if isinstance(node, ast.Attribute) else None)
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        name = str(node.slice.value)
    return name is not None and any(word in name.lower() for word in NAME_LIKE)


def _method_literals(node: ast.AST) -> list[str]:
    values = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [v.value for v in values
            if isinstance(v, ast.Constant) and isinstance(v.value, str) and v.value in METHOD_NAMES]


def method_name_comparisons(source: str, path: str) -> list[tuple[str, str]]:
    """(path, source line) of every comparison of a method-name literal (alone or in a tuple /
    list / set) with something named like ``method`` / ``name``."""
    found = []
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source, filename=path)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        if any(_method_literals(o) for o in operands) and any(_is_name_like(o)
                                                               for o in operands):
            found.append((path, lines[node.lineno - 1].strip()))
    return found


def lazy_imports(imports: Iterable[Import]) -> list[Import]:
    """Imports inside function bodies, except the heavy optional ``LAZY_IMPORTS_OK``."""
    return [imp for imp in imports
            if imp.in_function and imp.target.split(".")[0] not in LAZY_IMPORTS_OK]


def _sources() -> dict[str, str]:
    repo = PACKAGE_ROOT.parent
    return {p.relative_to(repo).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(PACKAGE_ROOT.rglob("*.py"))}


@pytest.fixture(scope="module")
def all_imports() -> list[Import]:
    return [imp for path, src in _sources().items() for imp in imports_of(src, path)]


def _check(found: Iterable[tuple[str, str]], known: Iterable[tuple[str, str]], what: str) -> None:
    """Fails on an offender beyond the allow-list ``known`` (counted: a second copy of an
    allowed line is new) and on an allow-listed one that is gone."""
    found, known = Counter(found), Counter(known)
    new, gone = sorted((found - known).elements()), sorted((known - found).elements())
    assert not new, f"{what} (fix them; do not extend the allow-list):\n" + "\n".join(map(str,
                                                                                        new))
    assert not gone, (f"allow-listed {what} no longer occur; remove them from the list:\n"
                      + "\n".join(map(str, gone)))


def test_every_package_has_a_layer():
    packages = {package_of(module_name(p)) for p in _sources()}
    assert packages - {ROOT_INIT} == set(LAYER), "give a new package a place in LAYER"


def test_no_upward_import(all_imports):
    found = [(imp.path, imp.target) for imp in upward_imports(all_imports)]
    _check(found, HOOKS_BRANCH_UPWARD_IMPORTS, "upward imports")


def test_no_import_cycle_between_packages(all_imports):
    known = set(HOOKS_BRANCH_UPWARD_IMPORTS)
    rest = [imp for imp in all_imports if (imp.path, imp.target) not in known]
    assert package_cycles(rest) == []


def test_no_method_name_comparison_outside_methods():
    found = [hit for path, src in _sources().items()
             if package_of(module_name(path)) not in METHOD_NAME_COMPARISON_OK
             for hit in method_name_comparisons(src, path)]
    _check(found, HOOKS_BRANCH_METHOD_COMPARISONS, "method-name comparisons outside methods/")


def test_imports_at_the_top_of_files(all_imports):
    found = [(imp.path, imp.target) for imp in lazy_imports(all_imports)]
    _check(found, HOOKS_BRANCH_LAZY_IMPORTS, "imports inside functions")


# ---------------------------------------------------------------- the checker itself


FAKE_TRAIN = '''
"""A train module that reaches up into eval."""
import numpy as np
from jaxssl.data.spec import make_source      # down: fine
from jaxssl.ops import kmeans                 # down: fine
from jaxssl.train import mesh                 # own package: fine
from jaxssl.eval.knn import knn_classify      # up: caught
from jaxssl import export                     # up, the package form: caught
from ..eval import plots                      # up, relative: caught


def f(config):
    import torch                              # heavy optional: fine
    from jaxssl.losses import koleo            # lazy: caught
    if config.method == "excb":               # caught
        pass
    if name in ("dino", "ibot"):              # caught
        pass
    if config.method_name != other:            # no literal: fine
        pass
    return "excb" == "excb"                    # nothing named like a method: fine
'''


def test_checker_catches_a_synthetic_upward_import_cycle_and_name_branch():
    imports = list(imports_of(FAKE_TRAIN, "jaxssl/train/fake.py"))
    up = [imp.target for imp in upward_imports(imports)]
    assert up == ["jaxssl.eval.knn", "jaxssl.export", "jaxssl.eval"]
    assert [imp.target for imp in lazy_imports(imports)] == ["jaxssl.losses"]
    hits = [line for _, line in method_name_comparisons(FAKE_TRAIN, "jaxssl/train/fake.py")]
    assert [h.split(":")[0] for h in hits] == ['if config.method == "excb"',
                                               'if name in ("dino", "ibot")']
    # The same imports from an entry point are fine; eval -> train is down, eval -> export not.
    assert upward_imports(imports_of(FAKE_TRAIN, "jaxssl/train/__main__.py")) == []
    sibling = "from jaxssl.export import export\nfrom jaxssl.train.restore import x\n"
    assert [i.target for i in upward_imports(imports_of(sibling, "jaxssl/eval/cli.py"))] == [
        "jaxssl.export"]
    # jaxssl/__init__.py may not import its sub-packages (``import jaxssl.losses`` stays light).
    assert len(upward_imports(imports_of("from jaxssl import losses\n",
                                         "jaxssl/__init__.py"))) == 1
    cycle = imports + list(imports_of("from jaxssl.train import loop\n", "jaxssl/eval/x.py"))
    assert package_cycles(cycle) == [["eval", "train"]]


def test_allow_lists_fail_on_a_new_offender_and_on_a_stale_entry():
    _check([("a.py", "x"), ("a.py", "x")], [("a.py", "x"), ("a.py", "x")], "offenders")
    with pytest.raises(AssertionError, match="do not extend"):
        _check([("a.py", "x"), ("a.py", "x")], [("a.py", "x")], "offenders")  # a second copy
    with pytest.raises(AssertionError, match="no longer occur"):
        _check([], [("a.py", "x")], "offenders")
