"""The numpy side of tiled edges: slice a region out of a tensor, stitch regions back into one.

An edge of a stage-graph plan may carry a *region* of a tensor (per-axis ``[start, stop)``
bounds over every axis, as :class:`hwsched.placement.Region` and ``plan.json`` write them). Two
rules make a fused-tile run out of plain edges, the same in the export's proof and on a board:

* the sender holds the whole tensor and sends only the region (the scatter slicing a tile's
  input with its halo): :func:`outgoing`;
* the receiver needs the whole tensor and gets it in pieces from several upstreams (the gather
  of the tiles' strips): :func:`incoming` stitches them, refusing pieces that overlap or leave
  a hole — a missing strip is an error, never zeros.

Imported by the runner: numpy only, no TensorFlow.

>>> x = np.arange(12).reshape(1, 4, 3, 1)
>>> top, bottom = ((0, 1), (0, 2), (0, 3), (0, 1)), ((0, 1), (2, 4), (0, 3), (0, 1))
>>> pieces = [(top, outgoing(x, top)), (bottom, outgoing(x, bottom))]
>>> bool((incoming(x.shape, pieces) == x).all())
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from hwsched.errors import PlanError

#: Per-axis ``[start, stop)`` bounds over every axis of a tensor.
Bounds = tuple[tuple[int, int], ...]


def bounds_shape(bounds: Bounds) -> tuple[int, ...]:
    """The shape of the region ``bounds``."""
    return tuple(stop - start for start, stop in bounds)


def check_bounds(bounds: Bounds, shape: Sequence[int], what: str) -> None:
    """Raise :class:`~hwsched.errors.PlanError` unless ``bounds`` is a non-empty region of a
    tensor of ``shape``."""
    inside = len(bounds) == len(shape) and all(
        0 <= start < stop <= size for (start, stop), size in zip(bounds, shape, strict=False)
    )
    if not inside:
        raise PlanError(f"{what}: region {[list(b) for b in bounds]} is not inside shape "
                        f"{list(shape)}")


def crop(array: np.ndarray, bounds: Bounds) -> np.ndarray:
    """The region ``bounds`` of ``array`` (a view)."""
    check_bounds(bounds, array.shape, "crop")
    return array[tuple(slice(start, stop) for start, stop in bounds)]


def outgoing(array: np.ndarray, bounds: Bounds | None) -> np.ndarray:
    """What an edge carries of ``array``: the region when the sender holds more than it (the
    scatter), the array itself when it already is the region (a tile's strip) or the edge has
    no region."""
    if bounds is None or tuple(array.shape) == bounds_shape(bounds):
        return array
    return crop(array, bounds)


def check_cover(shape: Sequence[int], regions: Sequence[Bounds], what: str) -> None:
    """Raise unless ``regions`` cover a tensor of ``shape`` exactly once (no overlap, no hole)."""
    for bounds in regions:
        check_bounds(bounds, shape, what)
    covered = sum(math.prod(bounds_shape(b)) for b in regions)
    count = np.zeros(tuple(shape), dtype=np.int32)
    for bounds in regions:
        count[tuple(slice(a, b) for a, b in bounds)] += 1
    if covered != count.size or not (count == 1).all():
        missing = int((count == 0).sum())
        raise PlanError(f"{what}: the regions leave {missing} elements uncovered or cover some "
                        f"twice, so they do not stitch into shape {list(shape)}")


def stitch(shape: Sequence[int], pieces: Sequence[tuple[Bounds, np.ndarray]],
           what: str = "stitch") -> np.ndarray:
    """One tensor of ``shape`` from pieces ``(bounds, array)``. Per frame only the element count
    is checked (the full cover check, :func:`check_cover`, runs once when a plan is loaded)."""
    for bounds, _ in pieces:
        check_bounds(bounds, shape, what)
    if sum(math.prod(bounds_shape(b)) for b, _ in pieces) != math.prod(shape):
        check_cover(shape, [bounds for bounds, _ in pieces], what)  # says what is wrong
    first = pieces[0][1]
    out = np.empty(tuple(shape), dtype=first.dtype)
    for bounds, array in pieces:
        if tuple(array.shape) != bounds_shape(bounds) or array.dtype != first.dtype:
            raise PlanError(f"{what}: a piece of shape {list(array.shape)} ({array.dtype}) "
                            f"does not fill region {[list(b) for b in bounds]} ({first.dtype})")
        out[tuple(slice(a, b) for a, b in bounds)] = array
    return out


def incoming(shape: Sequence[int], pieces: Sequence[tuple[Bounds | None, np.ndarray]],
             what: str = "stitch") -> np.ndarray:
    """A stage input of ``shape`` from what its edges delivered: one whole piece as it is, or
    region pieces stitched."""
    if len(pieces) == 1 and tuple(pieces[0][1].shape) == tuple(shape):
        return pieces[0][1]
    regions = []
    for bounds, array in pieces:
        if bounds is None:
            raise PlanError(f"{what}: {len(pieces)} pieces arrive for one tensor of shape "
                            f"{list(shape)} but one of them carries no region")
        regions.append((bounds, array))
    return stitch(shape, regions, what)
