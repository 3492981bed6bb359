"""Optional dependencies (the pip extras): one clear line naming the extra to install, instead
of a ``ModuleNotFoundError`` traceback from deep inside a command.

A core install (``pip install hwsched``) analyzes, schedules and reports; running pipeline
roles needs ``hwsched[runner]`` and logging a power meter ``hwsched[power]``. Commands call
:func:`require` before importing what the extra brings, so ``--help`` never needs it.

>>> require("power", "a test", modules=())
>>> sorted(EXTRAS)
['power', 'runner']
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass

from hwsched.errors import DependencyError


@dataclass(frozen=True)
class Module:
    """A dependency as the user installs it (``package``) and as Python imports it; any of
    ``imports`` will do (LiteRT comes as ``ai-edge-litert`` or, on some boards,
    ``tflite-runtime``)."""

    package: str
    imports: tuple[str, ...]


PYZMQ = Module("pyzmq", ("zmq",))
PYSERIAL = Module("pyserial", ("serial",))
LITERT = Module("ai-edge-litert", ("ai_edge_litert", "tflite_runtime"))

#: What each extra in pyproject.toml brings.
EXTRAS: dict[str, tuple[Module, ...]] = {
    "runner": (LITERT, PYZMQ, PYSERIAL),
    "power": (PYSERIAL,),
}


def _importable(module: Module) -> bool:
    for name in module.imports:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        return True
    return False


def require(extra: str, purpose: str, modules: Sequence[Module] | None = None) -> None:
    """Raise :class:`DependencyError` naming ``pip install 'hwsched[EXTRA]'`` unless every
    module of ``extra`` (or only ``modules``) imports."""
    for module in EXTRAS[extra] if modules is None else modules:
        if not _importable(module):
            raise DependencyError(f"{purpose} needs {module.package}, which is not installed: "
                                  f"pip install 'hwsched[{extra}]'")
