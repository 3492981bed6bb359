"""Runtime: run the stages of a deployment plan as a real pipeline.

What runs on a board imports only numpy, LiteRT (``ai-edge-litert``, or ``tflite-runtime`` as
fallback), pyzmq and pyserial — never TensorFlow — so ``pip install hwsched[runner]`` is enough:

* :mod:`~hwsched.runtime.frames`: the wire format of one tensor (header + raw bytes), validated
  against the plan before anything is allocated; never pickle.
* :mod:`~hwsched.runtime.framing`: COBS + CRC32 framing of messages on a serial line.
* :mod:`~hwsched.runtime.transport`: ZeroMQ TCP (high-water marks, optional CurveZMQ) and serial
  channels behind one small interface.
* :mod:`~hwsched.runtime.reliable`: sequence numbers, custody acknowledgements, resends,
  de-duplication; a restarted stage resumes and the sink gets every frame once, in order.
* :mod:`~hwsched.runtime.routing`: which tensors cross each hop, as the plan says; each stage
  applies the plan's hand-off steps with :mod:`hwsched.handoff`, the module export's proof uses.
* :mod:`~hwsched.runtime.stage`, :mod:`~hwsched.runtime.source`, :mod:`~hwsched.runtime.sink`:
  the three process roles; :mod:`~hwsched.runtime.cli` is ``hwsched-runner``.

Workstation tools, TensorFlow-free as well (nothing here imports TensorFlow, Keras or
:mod:`hwsched.export`; ``tests/test_handoff.py`` checks every import statement):
:mod:`~hwsched.runtime.emulate` (every role as its own pinned process on this machine,
optionally over shaped veth links) and :mod:`~hwsched.runtime.profile` (times segments that
:mod:`hwsched.export.profiling` converts, for calibrated analysis).
"""
