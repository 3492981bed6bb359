"""Mapping files: a hand-written placement, in YAML or JSON.

::

    boards:
      - {name: pi_a, platform: rpi4, cores: [0, 1]}
      - {name: pi_b, platform: rpi4}
      - {name: nano, platform: jetson_nano}
    stages:
      - {board: pi_a, layers: ["input..block3b_add"]}
      - {board: pi_b, layers: ["block4a_*", "top_conv"], cores: [2]}
      - {board: nano, layers: ["rest"]}
    link: gige

A layer pattern is a layer name, an inclusive range ``first..last`` of the topological order, a
glob (``*``, ``?``, ``[...]``), or ``rest`` (every layer no other pattern names; one stage at
most). Reading is in two steps so that cheap mistakes fail before a model is built:
:func:`read_mapping` checks the file's shape, boards and platforms; :func:`resolve_mapping`
turns patterns into layers of a graph and derives the placement (edges from the IR). Every
error is one :class:`~hwsched.errors.PlacementError` line naming the file and the field.

>>> spec = parse_mapping({"boards": [{"name": "a", "platform": "rpi4"}],
...                       "stages": [{"board": "a", "layers": ["rest"]}]}, "m.yaml")
>>> spec.boards[0].platform, spec.stages[0].patterns, spec.link
('rpi4', ('rest',), None)
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hwsched.errors import GraphError, PlacementError, UnknownNameError
from hwsched.hardware import link_names, load_platform
from hwsched.ir import LayerGraph
from hwsched.placement import Board, Placement, Stage, placement_from_stages

REST = "rest"
RANGE_SEPARATOR = ".."
GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class StageSpec:
    board: str
    patterns: tuple[str, ...]
    cores: tuple[int, ...] | None = None


@dataclass(frozen=True)
class MappingSpec:
    """A mapping file as read, before its patterns meet a graph."""

    source: str
    boards: tuple[Board, ...]
    stages: tuple[StageSpec, ...]
    link: str | None


def read_mapping(path: str | os.PathLike[str]) -> MappingSpec:
    """Read and check a mapping file (YAML, or JSON by a ``.json`` suffix)."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlacementError(f"{source}: mapping file does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PlacementError(f"{source}: cannot read mapping file ({error})") from None
    try:
        data = json.loads(text) if source.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        first = str(error).splitlines()[0]
        raise PlacementError(f"{source}: mapping file is not valid YAML/JSON: {first}") from None
    return parse_mapping(data, str(source))


def parse_mapping(data: Any, source: str) -> MappingSpec:
    if not isinstance(data, Mapping):
        raise PlacementError(f"{source}: a mapping file must hold a mapping with 'boards' and "
                             "'stages'")
    unknown = sorted(set(data) - {"boards", "stages", "link"})
    if unknown:
        raise PlacementError(f"{source}: unknown field {unknown[0]!r} (fields: boards, stages, "
                             "link)")
    boards = tuple(_board(item, f"{source}: boards[{i}]")
                   for i, item in enumerate(_list(data, "boards", source)))
    names = [b.name for b in boards]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise PlacementError(f"{source}: boards[{i}]: board name {name!r} repeats")
    stages = tuple(_stage(item, f"{source}: stages[{i}]", names)
                   for i, item in enumerate(_list(data, "stages", source)))
    rests = [i for i, s in enumerate(stages) if REST in s.patterns]
    if len(rests) > 1:
        raise PlacementError(f"{source}: stages[{rests[1]}]: 'rest' is already in "
                             f"stages[{rests[0]}]")
    link = data.get("link")
    if link is not None:
        if not isinstance(link, str):
            raise PlacementError(f"{source}: link: must be a link name or descriptor file")
        if link not in link_names() and not Path(link).is_file():
            raise PlacementError(f"{source}: link: unknown link {link!r}; valid: "
                                 f"{', '.join(link_names())}")
    return MappingSpec(source, boards, stages, link)


def _list(data: Mapping[str, Any], key: str, source: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list) or not value:
        raise PlacementError(f"{source}: {key}: must be a non-empty list")
    return value


def _cores(value: Any, where: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    ok = isinstance(value, list) and value and all(
        isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in value
    )
    if not ok or len(set(value)) != len(value):
        raise PlacementError(f"{where}: cores: must be a list of distinct core numbers >= 0")
    return tuple(value)


def _board(item: Any, where: str) -> Board:
    if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
        raise PlacementError(f"{where}: needs a 'name' and a 'platform'")
    extra = sorted(set(item) - {"name", "platform", "cores"})
    if extra:
        raise PlacementError(f"{where}: unknown field {extra[0]!r} (fields: name, platform, "
                             "cores)")
    platform = item.get("platform")
    if not isinstance(platform, str):
        raise PlacementError(f"{where}: board {item['name']!r} needs a 'platform'")
    try:
        load_platform(platform)
    except UnknownNameError as error:
        raise PlacementError(f"{where}: board {item['name']!r}: {error}") from None
    return Board(item["name"], platform, _cores(item.get("cores"), where))


def _stage(item: Any, where: str, boards: list[str]) -> StageSpec:
    if not isinstance(item, Mapping):
        raise PlacementError(f"{where}: needs a 'board' and 'layers'")
    extra = sorted(set(item) - {"board", "layers", "cores"})
    if extra:
        raise PlacementError(f"{where}: unknown field {extra[0]!r} (fields: board, layers, "
                             "cores)")
    board = item.get("board")
    if board not in boards:
        raise PlacementError(f"{where}: unknown board {board!r}; boards: {', '.join(boards)}")
    layers = item.get("layers")
    if isinstance(layers, str):
        layers = [layers]
    if not isinstance(layers, list) or not layers or not all(isinstance(x, str) for x in layers):
        raise PlacementError(f"{where}: layers: must be a list of layer names or patterns")
    return StageSpec(board, tuple(layers), _cores(item.get("cores"), where))


# -- patterns meet a graph -----------------------------------------------------------------------
def resolve_mapping(spec: MappingSpec, graph: LayerGraph) -> Placement:
    """The placement a mapping describes on ``graph`` (edges derived from the IR)."""
    chosen = [_match_stage(spec, i, graph) for i in range(len(spec.stages))]
    taken: dict[int, int] = {}
    for index, positions in enumerate(chosen):
        for position in sorted(positions):
            if position in taken:
                raise PlacementError(
                    f"{spec.source}: layer {graph.layers[position].name!r} is in stages["
                    f"{taken[position]}] and stages[{index}]"
                )
            taken[position] = index
    rest = frozenset(range(len(graph))) - frozenset(taken)
    for index, stage in enumerate(spec.stages):
        if REST in stage.patterns:
            chosen[index] = chosen[index] | rest
            rest = frozenset()
    if rest:
        first = graph.layers[min(rest)].name
        raise PlacementError(
            f"{spec.source}: layer {first!r} ({len(rest)} layer(s) in all) is in no stage; "
            "name it or add 'rest' to a stage"
        )
    stages = [
        Stage(s.board, frozenset(positions), s.cores)
        for s, positions in zip(spec.stages, chosen, strict=True)
    ]
    try:
        return placement_from_stages(graph, spec.boards, stages)
    except PlacementError as error:
        raise PlacementError(f"{spec.source}: {error}") from None


def _match_stage(spec: MappingSpec, index: int, graph: LayerGraph) -> frozenset[int]:
    found: set[int] = set()
    for pattern in spec.stages[index].patterns:
        if pattern == REST:
            continue
        try:
            matched = match_pattern(graph, pattern)
        except PlacementError as error:
            raise PlacementError(f"{spec.source}: stages[{index}]: {error}") from None
        if not matched:
            raise PlacementError(
                f"{spec.source}: stages[{index}]: {pattern!r} matches no layer of "
                f"{graph.name!r}"
            )
        found |= matched
    return frozenset(found)


def match_pattern(graph: LayerGraph, pattern: str) -> frozenset[int]:
    """Positions a pattern names: a layer, a range ``a..b`` (inclusive, topological), a glob.

    >>> from hwsched.schedule.synthetic import synthetic_graph
    >>> g = synthetic_graph(5, seed=0)
    >>> names = [layer.name for layer in g]
    >>> sorted(match_pattern(g, f"{names[1]}..{names[3]}"))
    [1, 2, 3]
    """
    if RANGE_SEPARATOR in pattern and not _has_layer(graph, pattern):
        first, _, last = pattern.partition(RANGE_SEPARATOR)
        start, stop = _position(graph, first, pattern), _position(graph, last, pattern)
        if stop < start:
            raise PlacementError(f"range {pattern!r}: {last!r} comes before {first!r}")
        return frozenset(range(start, stop + 1))
    if GLOB_CHARACTERS & set(pattern):
        return frozenset(
            p for p, layer in enumerate(graph) if fnmatch.fnmatchcase(layer.name, pattern)
        )
    if _has_layer(graph, pattern):
        return frozenset({graph.position(pattern)})
    return frozenset()


def _position(graph: LayerGraph, name: str, pattern: str) -> int:
    if not _has_layer(graph, name):
        raise PlacementError(f"range {pattern!r}: unknown layer {name!r}")
    return graph.position(name)


def _has_layer(graph: LayerGraph, name: str) -> bool:
    try:
        graph.position(name)
    except GraphError:
        return False
    return True
