"""hwsched: hardware-aware layer scheduling of DNN inference across embedded platforms.

Data flows one way through the subpackages:
load -> ir -> cuts -> costs -> schedule -> export -> runtime -> power -> report -> cli.
Only ``hwsched.load`` and ``hwsched.export`` touch TensorFlow/Keras; everything else works on
the immutable IR in :mod:`hwsched.ir` and runs without TensorFlow.
"""

__version__ = "0.1.0"
