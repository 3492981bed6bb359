"""Fused-tile spatial partitioning (issue 14): several boards share the same layers of a frame.

:mod:`hwsched.tiles.receptive` is the receptive-field algebra over the IR (which input region a
tile of a fused run needs); :mod:`hwsched.tiles.planning` costs a tiled run over boards, sizes
the strips and chooses the fused runs (and output-channel splits) with a dynamic program;
:mod:`hwsched.tiles.summary` is ``analyze --tiles``' JSON and terminal view;
:mod:`hwsched.tiles.layout` lays tiled runs out as stages and edges with regions (what
``export --tiles`` writes) and :mod:`hwsched.tiles.regions_np` slices and stitches those
regions (the runner's side); :mod:`hwsched.tiles.timing` plays one frame of an exported plan
from its timed stages and :mod:`hwsched.tiles.rebalance` re-sizes a run's strips on those
measured finishes (EdgeCI's balancing step). TensorFlow-free.
"""
