"""Gradient-based attribution baselines: saliency, gradient × input, SmoothGrad, integrated
gradients.

All share :func:`jaxlrp.explain`'s calling convention, ``method(f, *args, target=..., argnums=-1,
**options)``, return an array of ``args[argnums]``'s shape, and compose with ``jax.jit`` and
``jax.vmap``. The explained score is the target logit ``Σ_c f(*args)_c · onehot(target)_c`` per
example (a float ``target`` of the output's shape weights the outputs instead).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxlrp.attribution._target import check_argnums, gradient_at

Array = Any

__all__ = ["gradient", "gradient_x_input", "integrated_gradients", "saliency", "smoothgrad"]

RULES = ("riemann_left", "riemann_right", "riemann_middle", "trapezoid")


def gradient(f: Callable[..., Array], *args: Any, target: Any, argnums: int = -1) -> Array:
    """The gradient of the target score, ``∂f_t/∂x`` (signed).

    References:
      Simonyan, Vedaldi, Zisserman, "Deep inside convolutional networks: visualising image
      classification models and saliency maps", 2014.
    """
    n = check_argnums(argnums, len(args))
    return gradient_at(f, args, n, target)(args[n])


def saliency(f: Callable[..., Array], *args: Any, target: Any, argnums: int = -1) -> Array:
    """Sensitivity / saliency: the gradient's magnitude ``|∂f_t/∂x|`` (Simonyan et al. 2014)."""
    return jnp.abs(gradient(f, *args, target=target, argnums=argnums))


def gradient_x_input(f: Callable[..., Array], *args: Any, target: Any, argnums: int = -1) -> Array:
    """Gradient × input, ``x ⊙ ∂f_t/∂x``.

    References:
      Shrikumar, Greenside, Kundaje, "Learning important features through propagating activation
      differences", 2017.
    """
    n = check_argnums(argnums, len(args))
    return args[n] * gradient_at(f, args, n, target)(args[n])


def _mean_over(fn: Callable[[Array], Array], xs: Array, weights: Array,
               chunk_size: int | None) -> Array:  # fmt: skip
    """``Σ_k weights_k · fn(xs_k)``, vectorized with ``lax.map`` in chunks of ``chunk_size``."""
    values = jax.lax.map(fn, xs, batch_size=chunk_size)
    return jnp.tensordot(weights.astype(values.dtype), values, axes=1)


def smoothgrad(
    f: Callable[..., Array],
    *args: Any,
    target: Any,
    argnums: int = -1,
    key: Array | None = None,
    noise_level: float = 0.1,
    samples: int = 16,
    magnitude: bool = False,
    chunk_size: int | None = None,
) -> Array:
    """SmoothGrad: the gradient averaged over noisy copies of the input.

    ``(1/n) Σ_k g(x + ε_k)``, ``ε_k ~ N(0, σ²)``, ``σ = noise_level · (max x − min x)`` (the
    range of the whole explained array). With ``magnitude=True`` the average of ``|g|`` (saliency).

    Args:
      key: PRNG key of the noise (``jax.random.key(0)`` when None).
      noise_level: σ relative to the input's value range (Smilkov et al. use 0.1–0.2).
      samples: number ``n`` of noisy copies.
      magnitude: average ``|∂f_t/∂x|`` instead of the signed gradient.
      chunk_size: evaluate that many copies at once (all when None) to bound memory.

    References:
      Smilkov, Thorat, Kim, Viégas, Wattenberg, "SmoothGrad: removing noise by adding noise", 2017.
    """
    n = check_argnums(argnums, len(args))
    x = args[n]
    key = jax.random.key(0) if key is None else key
    sigma = noise_level * (jnp.max(x) - jnp.min(x))
    noise = sigma * jax.random.normal(key, (samples, *jnp.shape(x)), jnp.result_type(x))
    grad = gradient_at(f, args, n, target)
    one = (lambda e: jnp.abs(grad(x + e))) if magnitude else (lambda e: grad(x + e))
    return _mean_over(one, noise, jnp.full((samples,), 1.0 / samples), chunk_size)


def _path_points(steps: int, rule: str) -> tuple[Array, Array]:
    """Interpolation points ``α_k`` in [0, 1] and quadrature weights (summing to 1)."""
    if rule not in RULES:
        raise ValueError(f"unknown integration rule {rule!r}; choose one of {RULES}")
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    k = jnp.arange(steps, dtype=jnp.float32)
    if rule == "trapezoid":
        if steps < 2:
            raise ValueError("the trapezoid rule needs steps ≥ 2")
        alphas = k / (steps - 1)
        weights = jnp.full((steps,), 1.0 / (steps - 1)).at[jnp.array([0, -1])].multiply(0.5)
        return alphas, weights
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[rule]
    return (k + offset) / steps, jnp.full((steps,), 1.0 / steps)


def integrated_gradients(
    f: Callable[..., Array],
    *args: Any,
    target: Any,
    argnums: int = -1,
    baseline: Any = 0.0,
    steps: int = 32,
    rule: str = "riemann_middle",
    chunk_size: int | None = None,
) -> Array:
    """Integrated gradients along the straight path from ``baseline`` to ``x``.

    ``IG(x) = (x − x̄) ⊙ ∫₀¹ ∂f_t/∂x (x̄ + α (x − x̄)) dα``, the integral by a quadrature rule
    over ``steps`` points; completeness ``Σ IG ≈ f_t(x) − f_t(x̄)`` up to the quadrature error.

    Args:
      baseline: ``x̄``, a scalar or an array broadcastable to ``x`` (default 0).
      steps: number of gradient evaluations.
      rule: ``"riemann_left"``, ``"riemann_right"``, ``"riemann_middle"`` or ``"trapezoid"``.
      chunk_size: evaluate that many path points at once (all when None).

    References:
      Sundararajan, Taly, Yan, "Axiomatic attribution for deep networks", ICML 2017.
    """
    n = check_argnums(argnums, len(args))
    x = args[n]
    base = jnp.broadcast_to(jnp.asarray(baseline, jnp.result_type(x)), jnp.shape(x))
    alphas, weights = _path_points(steps, rule)
    grad = gradient_at(f, args, n, target)
    mean_grad = _mean_over(lambda a: grad(base + a.astype(x.dtype) * (x - base)), alphas,
                           weights, chunk_size)  # fmt: skip
    return (x - base) * mean_grad
