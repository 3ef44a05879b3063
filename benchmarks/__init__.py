"""Benchmarks of jaxlrp against ``jax.grad`` of the same model, measured in the same run.

Run ``python -m benchmarks.run --help`` from the repository root. Importing this package does not
import JAX (``--devices`` must set ``XLA_FLAGS`` first).
"""
