"""The ``[runner]`` extra installs an interpreter on every board hwsched claims: its requirements
(read from pyproject.toml, markers evaluated for the board) resolve to wheels for CPython 3.11
on 64-bit Raspberry Pi OS / Ubuntu (aarch64) and 32-bit Raspberry Pi OS (armv7l), so a
dependency change that strands a board fails here. Needs the package registry: skipped with a
clear message when it cannot be reached. On armv7l numpy, pyzmq and pillow publish no wheels on
the registry (Raspberry Pi OS takes them from piwheels, which this check cannot reach)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
PIP_TIMEOUT_S = 300
#: Board architecture -> the wheel platform tags a board of that kind accepts.
BOARDS = {
    "aarch64": ("manylinux_2_27_aarch64", "manylinux_2_28_aarch64", "manylinux2014_aarch64",
                "manylinux_2_17_aarch64", "linux_aarch64"),
    "armv7l": ("manylinux_2_34_armv7l", "manylinux_2_31_armv7l", "manylinux2014_armv7l",
               "manylinux_2_17_armv7l", "linux_armv7l"),
}
#: Published on armv7l only through piwheels (Raspberry Pi OS's default extra index).
PIWHEELS_ONLY = {"armv7l": {"numpy", "pyzmq", "pillow"}}
INTERPRETERS = {"ai-edge-litert", "tflite-runtime"}
#: What pip prints when it cannot reach the registry at all.
OFFLINE_SIGNS = ("NewConnectionError", "Temporary failure in name resolution",
                 "Network is unreachable", "Max retries exceeded", "connection error")


def runner_requirements(machine: str) -> list[Requirement]:
    """The runner extra's requirements that apply on a Linux CPython 3.11 board of ``machine``."""
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    environment = default_environment()
    environment.update(platform_machine=machine, python_version="3.11",
                       python_full_version="3.11.2", sys_platform="linux",
                       platform_system="Linux", implementation_name="cpython")
    wanted = [Requirement(text) for text in extras["runner"]]
    return [r for r in wanted if r.marker is None or r.marker.evaluate(environment)]


def _download(requirement: Requirement, machine: str, target: Path) -> subprocess.CompletedProcess:
    platforms = [arg for tag in BOARDS[machine] for arg in ("--platform", tag)]
    return subprocess.run(
        [sys.executable, "-m", "pip", "download", "--only-binary=:all:", *platforms,
         "--python-version", "3.11", "--implementation", "cp", "--no-deps", "--pre",
         "--disable-pip-version-check", "-d", str(target), str(requirement).split(";")[0]],
        capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
    )


def test_each_board_gets_exactly_one_interpreter_from_the_extra():
    for machine in BOARDS:
        names = {r.name for r in runner_requirements(machine)}
        assert len(names & INTERPRETERS) == 1, (machine, names)
    assert "numpy" in {r.name for r in runner_requirements("armv7l")}  # numpy<2 for tflite-runtime


@pytest.mark.parametrize("machine", sorted(BOARDS))
def test_the_runner_extra_resolves_to_wheels_on_the_board(machine, tmp_path):
    stranded = []
    for requirement in runner_requirements(machine):
        if requirement.name in PIWHEELS_ONLY.get(machine, set()):
            continue
        done = _download(requirement, machine, tmp_path)
        if done.returncode != 0 and any(sign in done.stderr for sign in OFFLINE_SIGNS):
            pytest.skip(f"package registry unreachable; cannot resolve {requirement} for "
                        f"{machine} (run this check online)")
        if done.returncode != 0:
            stranded.append(f"{requirement}: {done.stderr.strip().splitlines()[-1]}")
    assert not stranded, f"{machine} boards are stranded: {stranded}"
    wheels = [path.name for path in tmp_path.glob("*.whl")]
    interpreter = [w for w in wheels if w.startswith(("ai_edge_litert", "tflite_runtime"))]
    assert len(interpreter) == 1 and machine in interpreter[0], wheels
    assert "cp311" in interpreter[0] or "py3" in interpreter[0]
