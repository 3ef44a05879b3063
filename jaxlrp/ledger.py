"""The relevance ledger: how much relevance enters and leaves every layer and node.

LRP is *conservative* when every rule passes on what it receives (``Σ_i R_i = Σ_j R_j``).
Real models are not: a bias, the ε of a stabilizer, a ``stop_gradient`` or a rule such as
z⁺ on a layer with negative pre-activations absorb (or inject) relevance. On a model nobody on
the team has seen, the question "where did my relevance go?" is answered by one run::

    book = jaxlrp.ledger(model.apply, variables, x, target=3, composite=composite)
    print(book)                 # every layer and node: Σ R out, Σ R in, absorbed
    book.absorbing(0.01)        # the entries that absorb more than 1% of the output relevance

How it works: jaxlrp propagates the modified gradient ``c = R / v`` (see
:mod:`jaxlrp.interpreter`). The ledger adds a zero *probe* array to the output of every layer
and node and to every relevance-carrying operand it reads, and runs the explanation's backward
pass once. The cotangent of a probe is ``c`` at that place, so ``Σ v ⊙ c`` is the relevance
that passes there: out of the node's output (``relevance_out``, what the node receives from
above) and into its operands (``relevance_in``, what it passes on, including the part a
first-layer rule assigns through the input tap). The difference is what the node absorbed.
Structural ops (reshape, slice, ...) are exact by construction and are not listed.

References:
  Montavon et al., "Layer-Wise Relevance Propagation: An Overview", 2019, §10.1 (conservation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlrp.composites import Composite
from jaxlrp.interpreter import UNPROBED_KINDS, evaluate
from jaxlrp.plan import NodeKind

Array = Any
Site = tuple  # ("out", i) | ("in", i, k) | ("tap", i)


@dataclasses.dataclass(frozen=True)
class LedgerEntry:
    """One layer or node of the relevance ledger.

    Attributes:
      index: the equation index of the layer's linear op or of the node.
      primitive: the JAX primitive (``dot_general``, ``add``, ``logistic``, ...).
      kind: ``"layer/dense"``, ``"layer/conv"``, ``"layer/affine"``, or the node kind
        (``activation``, ``sum``, ``max``, ``product``, ``block``, ``control``).
      module: the layer path or the equation's name stack.
      rule: the rule that ran (its ``repr``).
      relevance_out: ``Σ R`` at the node's output (what it received).
      relevance_in: ``Σ R`` it passed to its operands (what it sent on).
    """

    index: int
    primitive: str
    kind: str
    module: str
    rule: str
    relevance_out: float
    relevance_in: float

    @property
    def absorbed(self) -> float:
        """``relevance_out - relevance_in``: what this node absorbed (negative: injected)."""
        return self.relevance_out - self.relevance_in


@dataclasses.dataclass(frozen=True)
class Ledger:
    """Relevance in and out of every layer and node (see the module docstring).

    Attributes:
      entries: one per layer and node, in program order.
      output_relevance: ``Σ R`` at the model output (the explained logit(s)).
      input_relevance: ``Σ R`` at the explained input(s).
    """

    entries: tuple[LedgerEntry, ...]
    output_relevance: float
    input_relevance: float

    def absorbing(self, fraction: float = 0.01) -> list[LedgerEntry]:
        """Entries whose ``|absorbed|`` exceeds ``fraction`` of ``|output_relevance|``, largest
        first: where the relevance went."""
        scale = abs(self.output_relevance) or 1.0
        hits = [e for e in self.entries if abs(e.absorbed) > fraction * scale]
        return sorted(hits, key=lambda e: -abs(e.absorbed))

    def __str__(self) -> str:
        rows = [("#", "kind", "module", "rule", "R out", "R in", "absorbed")]
        for e in self.entries:
            rows.append((str(e.index), e.kind, e.module or "-", e.rule, f"{e.relevance_out:.4g}",
                         f"{e.relevance_in:.4g}", f"{e.absorbed:+.3g}"))  # fmt: skip
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
        lines.append(
            f"output Σ R = {self.output_relevance:.6g}, input Σ R = {self.input_relevance:.6g}, "
            f"absorbed {self.output_relevance - self.input_relevance:+.3g}"
        )
        return "\n".join(lines)


_NOTES = {NodeKind.BLOCK: "(blocks relevance)", NodeKind.CONTROL: "(body: not probed)"}


def _entries_meta(plan: Any, composite: Composite) -> dict[int, tuple[str, str, str, str]]:
    """Per probed equation index: (primitive, kind, module, rule)."""
    meta: dict[int, tuple[str, str, str, str]] = {}
    for i, layer in plan.layers.items():
        info = layer.info
        rule = composite.layer_rule(info)
        meta[i] = (info.primitive, f"layer/{info.kind}", info.path or info.name_stack, repr(rule))
    for i, spec in plan.nodes.items():
        if spec.kind in UNPROBED_KINDS:
            continue
        eqn = plan.program.eqns[spec.first if spec.post else i]
        if spec.kind in _NOTES:
            rule = _NOTES[spec.kind]
        else:
            rule = repr(composite.node_rule(spec.kind))
        meta[i] = (eqn.name, spec.kind, eqn.name_stack, rule)
    return meta


def ledger(
    fn: Callable[..., Array],
    *args: Any,
    target: Any,
    composite: Composite | None = None,
    argnums: int | Sequence[int] = -1,
    batched: bool | None = None,
) -> Ledger:
    """Run the explanation of ``fn(*args)`` for ``target`` once and account for the relevance
    entering and leaving every layer and node (summed over the batch).

    Args:
      fn: as for :func:`jaxlrp.explain`.
      *args: as for :func:`jaxlrp.explain`.
      target: as for :func:`jaxlrp.explain`.
      composite: as for :func:`jaxlrp.explain`.
      argnums: as for :func:`jaxlrp.explain`.
      batched: as for :func:`jaxlrp.explain`.

    Returns:
      A :class:`Ledger`; ``print`` it for a table, or ask :meth:`Ledger.absorbing`.
    """
    from jaxlrp.explain import _as_function, _trace, output_relevance

    composite = composite if composite is not None else Composite(default=None)
    call, call_args, nums = _as_function(fn, args, argnums)
    traced = _trace(call, call_args, nums)
    plan = traced.plan
    is_batched = batched if batched is not None else len(plan.program.outputs[0].shape) >= 2
    inputs, _ = traced.inputs()
    leaves = [inputs[k] for k in traced.active_index]
    taps = [jnp.zeros_like(x) for x in leaves]
    active_vars = [plan.program.inputs[k] for k in traced.active_index]
    meta = _entries_meta(plan, composite)

    def run(leaves_, taps_, probes, record):
        values = list(inputs)
        for k, v in zip(traced.active_index, leaves_, strict=True):
            values[k] = v
        seen: dict[Site, Array] = {}

        def probe(site: Site, value: Array) -> Array:
            if site[1] not in meta:
                return value
            seen[site] = value
            if record:
                return value
            return value + probes[site]

        tap_env = dict(zip(active_vars, taps_, strict=True))
        (out,) = evaluate(plan, composite, values, tap_env, is_batched, probe=probe)
        return out, seen

    shapes = jax.eval_shape(lambda: run(leaves, taps, None, True)[1])
    zeros = {s: jnp.zeros(a.shape, a.dtype) for s, a in shapes.items()}
    out, pullback, values = jax.vjp(lambda a, b, c: run(a, b, c, False), leaves, taps, zeros,
                                    has_aux=True)  # fmt: skip
    relevance, cotangent = output_relevance(out, target)
    c_leaves, c_taps, c_probes = pullback(cotangent)

    def total(site: Site) -> float:
        if site not in c_probes:
            return 0.0
        if site[0] == "tap":
            return float(np.sum(np.asarray(c_probes[site], np.float64)))
        v = np.asarray(values[site], np.float64)
        return float(np.sum(v * np.asarray(c_probes[site], np.float64)))

    entries = []
    for i in sorted(meta):
        primitive, kind, module, rule = meta[i]
        r_out = total(("out", i))
        r_in = sum(total(s) for s in c_probes if s[0] in ("in", "tap") and s[1] == i)
        entries.append(LedgerEntry(i, primitive, kind, module, rule, r_out, r_in))
    r_input = sum(
        float(np.sum(np.asarray(x, np.float64) * np.asarray(c, np.float64) + np.asarray(t)))
        for x, c, t in zip(leaves, c_leaves, c_taps, strict=True)
    )
    return Ledger(tuple(entries), float(np.sum(np.asarray(relevance, np.float64))), r_input)
