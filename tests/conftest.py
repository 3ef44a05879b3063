"""Test-suite settings.

Eager ``jaxlrp.explain`` calls normally run through ``jax.jit`` (one compilation per function
and composite). The suite tries many composites on a few small models, where running op by op
(each primitive compiled once, then reused) is about twice as fast; the compiled path is tested
explicitly in ``tests/core/test_core_transformations.py``.
"""

import os

os.environ.setdefault("JAXLRP_COMPILE_EAGER", "0")
# The CLI and the examples switch on JAX's persistent compilation cache; tests that run them
# in-process must not change the configuration of the rest of the suite (nor write to ~/.cache).
os.environ.setdefault("JAXLRP_NO_CACHE", "1")
