"""Writing files so that a failure never leaves a half-written or clobbered result behind."""

from __future__ import annotations

import json
import os
import re
import tempfile
from itertools import accumulate
from pathlib import Path
from typing import Any

from hwsched.errors import HwschedError, OutputError

#: Largest JSON document hwsched reads (plans, analyses, emulation and power results).
MAX_JSON_BYTES = 64 * 1024 * 1024
#: Deepest nesting of arrays/objects accepted; hwsched's own documents nest under 10 levels.
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            # mkstemp creates 0600; give the result the permissions a plain open() would
            os.fchmod(fd, 0o666 & ~_umask())
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise OutputError(f"{target}: cannot write ({error.strerror or error})") from None
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    """Write JSON with sorted-free, stable formatting (insertion order is the contract)."""
    return atomic_write_text(path, json.dumps(payload, indent=2, allow_nan=False) + "\n")


def json_depth(text: str) -> int:
    """The deepest bracket nesting of a JSON text, counted without parsing it (no recursion).

    >>> json_depth('{"a": [1, [2, "]]]"]]}')
    3
    """
    brackets = _JSON_BRACKET.findall(_JSON_STRING.sub('""', text))
    return max(accumulate(1 if b in "[{" else -1 for b in brackets), default=0)


def loads_json(
    text: str, where: str, error: type[HwschedError], max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """Parse JSON text, refusing nesting deeper than ``max_depth`` *before* parsing (the
    parser and every reader after it recurse) and the non-standard NaN/Infinity literals.
    Numbers too large for a float (``1e999``) parse as ``inf``; readers check ranges."""
    check_json_depth(text, where, error, max_depth)
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as failure:
        raise error(f"{where}: not valid JSON ({failure})") from None
    except ValueError as failure:  # NaN/Infinity, or an integer of over 4,300 digits
        raise error(f"{where}: not valid JSON ({failure})") from None


def check_json_depth(
    text: str, where: str, error: type[HwschedError], max_depth: int = MAX_JSON_DEPTH
) -> None:
    """Refuse JSON nested deeper than ``max_depth``: the parser recurses once per level."""
    depth = json_depth(text)
    if depth > max_depth:
        raise error(f"{where}: JSON nested {depth} levels deep; at most {max_depth} are accepted")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_json(
    path: str | os.PathLike[str],
    error: type[HwschedError],
    kind: str = "JSON",
    max_bytes: int = MAX_JSON_BYTES,
    max_depth: int = MAX_JSON_DEPTH,
) -> Any:
    """The one way hwsched reads a JSON file a user hands it: size and nesting are capped
    before parsing, and every failure is one ``error`` naming the file."""
    target = Path(path)
    try:
        size = target.stat().st_size
        if size > max_bytes:
            raise error(f"{target}: {kind} file is {size:,} bytes; at most {max_bytes:,} are read")
        text = target.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise error(f"{target}: {kind} file does not exist") from None
    except IsADirectoryError:
        raise error(f"{target}: is a directory; expected the {kind} file") from None
    except OSError as failure:
        raise error(f"{target}: cannot read {kind} file ({failure.strerror})") from None
    except UnicodeDecodeError:
        raise error(f"{target}: {kind} file is not UTF-8 text") from None
    return loads_json(text, str(target), error, max_depth)
