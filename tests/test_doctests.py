"""Every docstring example in the hwsched package runs and prints what it says it prints.

Modules are discovered with ``pkgutil.walk_packages``, so a new module's examples run without
editing this file. Two checks per module: ``doctest`` reports no failure, and the number of
examples it ran equals the number written in the module's source (minus those marked
``+SKIP``), so an example placed where the doctest finder never looks (a comment, a nested
function, a string that is not a docstring) fails here instead of silently never running.
"""

import ast
import doctest
import importlib
import importlib.util
import inspect
import pkgutil
from pathlib import Path

import pytest

import hwsched

# Third-party packages a module may need that a minimal install (no ``[full]`` extra) lacks. A
# module whose import fails for any other reason is an error, not a skip.
OPTIONAL_DEPENDENCIES = frozenset(
    {"tensorflow", "keras", "ai_edge_litert", "tflite_runtime", "tflite_micro", "zmq", "serial",
     "sklearn", "playwright"}
)


def _module_names() -> list[str]:
    """All modules of the package; ``__main__`` would run the CLI when imported. A subpackage
    that cannot be imported is listed too (its submodules cannot be walked), so that its test
    skips it by name when an optional dependency is missing, and fails otherwise."""
    unwalked: list[str] = []

    def note_unwalked(package: str) -> None:
        unwalked.append(package)

    walked = [info.name for info in pkgutil.walk_packages(hwsched.__path__, "hwsched.",
                                                          onerror=note_unwalked)]
    names = {"hwsched", *walked, *unwalked}
    return sorted(name for name in names if not name.endswith(".__main__"))


MODULES = _module_names()


def _import_or_skip(name: str):
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in OPTIONAL_DEPENDENCIES:
            pytest.skip(f"{name} needs the optional dependency {missing}")
        raise


def _written_examples(name: str) -> int:
    """Examples in the module's string literals that doctest would run, counted without
    doctest's finder: the oracle for "every example written is executed"."""
    source = Path(importlib.util.find_spec(name).origin).read_text(encoding="utf-8")
    parser = doctest.DocTestParser()
    return sum(
        1
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and ">>>" in node.value
        for example in parser.get_examples(inspect.cleandoc(node.value))
        if not example.options.get(doctest.SKIP, False)
    )


def test_discovery_finds_the_package_tree():
    """Guards the discovery itself: a broken walk would make every other test vacuous."""
    for expected in ("hwsched.ir", "hwsched.costs.latency", "hwsched.runtime.frames",
                     "hwsched.power.meters", "hwsched.report.svg"):
        assert expected in MODULES
    assert len(MODULES) > 40


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = _import_or_skip(name)
    result = doctest.testmod(module, verbose=False, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
    assert result.attempted == _written_examples(name), (
        f"{name}: {_written_examples(name)} examples written, {result.attempted} run by doctest "
        "(an example outside a docstring the finder sees?)"
    )


def test_examples_exist_where_promised():
    """The package documents itself by example; losing them all (e.g. a finder that sees no
    module) must not pass unnoticed."""
    total = sum(_written_examples(name) for name in MODULES)
    assert total >= 70
