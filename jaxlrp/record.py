"""Relevance at any layer: recording intermediate (and parameter) relevance in the same pass.

``jaxlrp.explain(..., record=...)`` and ``jaxlrp.lrp(..., record=...)`` return, besides the
input relevance, the relevance at chosen intermediate values, computed by the same backward
pass (one compiled call; it works under ``jax.jit`` and ``jax.vmap``)::

    rec = jaxlrp.explain(model.apply, variables, x, target=3, record="features/*")
    rec.input                      # the usual input relevance
    rec.layers["features/conv_3:out"]   # R at the output of that layer (its output's shape)
    rec.layers["features/conv_3:in"]    # R it passes to its input (its input's shape)

This is what Captum's ``LayerLRP`` (``attribute(..., attribute_to_layer_input=...)``), zennit's
hooks, iNNvestigate's ``reverse_keep_tensors`` and RelevancePropagation.jl's
``layerwise_relevances`` give.

**Units and keys.** What can be recorded is every *unit* of the top-level program: each dense,
conv or affine layer (its whole unit: linear op, folded bias/batch norm) and each node with a
rule (activation, sum, max, product, gate, norm, softmax, attention). A unit is named

* for a layer, its :attr:`~jaxlrp.plan.LayerInfo.path` (``"features/conv_3"``, ``"Dense_0"``,
  ``"dense_0"`` for a weight without a parameter path);
* for a node, its Flax module (name stack, without the root module's class name that linen puts
  first, so that it reads like the layer paths) followed by its kind: ``"block_0/activation"``,
  or only the kind for a node of the root module (``"activation"``, ``"sum"``).

When several units share a name (a module with several nodes of one kind, a layer applied
twice), each gets ``#k``, its position among them in program order: ``"activation#0"``,
``"activation#1"``. The recorded values are keyed ``"<name>:out"`` (the relevance of the unit's
output, ``R = v ⊙ c``: what it receives from above) and ``"<name>:in"`` (the relevance it passes
to its input: ``R = a ⊙ c`` plus, for a first layer with z^B/flat/w² rules, the part assigned
independently of ``a``); a node with several relevance-carrying operands (a residual add, a
product) has ``"<name>:in0"``, ``"<name>:in1"``, ... in operand order. Structural ops (reshape,
slice, ...) move relevance exactly and are not units; bodies of ``scan``/``cond`` are not
recorded (the loop's own relevance flows through the units around it).

**Selectors** (``record``): ``"all"`` (every unit, both sides); a glob pattern (``*`` within a
path component, ``**`` across, ``?`` one character), which selects every unit whose name, module
path, name stack or parameter path it matches, or a module above it (``"encoder/layer_*/attention"``
selects every layer and node in those modules); a pattern ending in ``":out"`` or ``":in"`` keeps
only that side (``"**:out"``: every unit's output); an int (a layer's
:attr:`~jaxlrp.plan.LayerInfo.index`, negative from the end) or a :class:`~jaxlrp.plan.LayerInfo`
(from :func:`jaxlrp.layers`); or a list of these. A selector matching nothing raises
``ValueError`` listing the available names (also given by :func:`recordable`).

**Parameter relevance** (``record_params``: ``True``/``"all"`` for every dense/conv layer, or
the same selectors) is defined for the ε-rule family (LRP-0, ε, relative ε: rules with one plain
term ``a_i w_ij / stab(z_j)``). With ``s_j = R_j / stab(z_j)``, the relevance of weight ``w_ij``
is its share of the contributions ``a_i w_ij`` summed over the batch (and over every position
where a convolution applies it):

.. math::  R_{w_{ij}} = \\sum_{\\text{batch, positions}} a_i\\, w_{ij}\\, s_j,
           \\qquad \\sum_{ij} R_{w_{ij}} = \\sum_i R_{a_i}

i.e. ``R_w = w ⊙ (∂ f(a; w)/∂w)ᵀ s``, of the shape of the layer's weight operand (a Flax
kernel), with batch norm / scalings folded in (``w' = α w``: the contribution ``a_i w'_ij``). It is
keyed by the layer's unit name (``rec.params["Dense_0"]``). Under ``jax.vmap`` it is per
example. For other rules (γ, αβ, z⁺, z^B, ...) a contribution per weight is not what the rule
distributes, so asking for it raises ``ValueError``; affine layers have no weight matrix and are
not offered.

References:
  Montavon et al., "Layer-Wise Relevance Propagation: An Overview", 2019 (conservation, §10.1).
  Captum ``LayerLRP``: https://captum.ai/api/layer.html#layer-lrp
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxlrp.composites import path_matches
from jaxlrp.errors import RuleError
from jaxlrp.plan import RULED_KINDS, LayerInfo, Plan
from jaxlrp.rules.base import LayerContext, ModifiedRule, _divide, _is_plain, stabilize

Array = Any
Site = tuple  # ("out", i) | ("in", i, k) | ("tap", i) | ("weight", i), as in interpreter.evaluate


class Recorded(NamedTuple):
    """What :func:`jaxlrp.explain` and :func:`jaxlrp.lrp`'s ``relevance_fn`` return when
    ``record`` or ``record_params`` is given (a pytree: it passes through ``jit``/``vmap``).

    Attributes:
      input: the relevance of ``args[argnums]``, exactly what is returned without ``record``.
      layers: ``{"<unit>:out" | "<unit>:in" | "<unit>:in<k>": R}``, the relevance at each
        recorded unit's output and input(s) (see :mod:`jaxlrp.record` for the key scheme).
      params: ``{"<layer unit>": R_w}``, the relevance of each recorded layer's weights.
    """

    input: Any
    layers: dict[str, Array]
    params: dict[str, Array]


@dataclasses.dataclass
class _Unit:
    name: str  # unique key stem
    anchor: int  # equation index (layer anchor or node equation)
    names: tuple[str, ...]  # what selectors match against
    info: LayerInfo | None  # layers only
    outs: list[tuple[Site, Any]]  # (site, var) of the output (none for multi-output nodes)
    ins: list[tuple[Site, Any]]  # (site, var) per relevance-carrying operand
    tap: tuple[Site, Any] | None = None  # first layers: the input tap
    weight: tuple[Site, Any] | None = None  # dense/conv layers: the weight operand


def _root(plan: Plan) -> str | None:
    """The name stack prefix linen puts before module paths (the root module's class name)."""
    roots = set()
    for layer in plan.layers.values():
        info = layer.info
        if info.name_stack and info.name_stack.endswith("/" + info.path):
            roots.add(info.name_stack[: -len(info.path) - 1])
    return roots.pop() if len(roots) == 1 else None


def _strip(stack: str, root: str | None) -> str:
    if root is None or not stack:
        return stack
    if stack == root:
        return ""
    return stack[len(root) + 1 :] if stack.startswith(root + "/") else stack


def units(plan: Plan) -> list[_Unit]:
    """Every recordable unit of the top-level program, in program order, uniquely named."""
    program = plan.program
    root = _root(plan)
    found: list[tuple[int, str, tuple[str, ...], _Unit]] = []
    for i, layer in plan.layers.items():
        info = layer.info
        unit = _Unit("", i, (), info, [(("out", i), layer.output)], [(("in", i, 0), layer.input)])
        if info.is_first:
            unit.tap = (("tap", i), layer.input)
        if not layer.affine:
            unit.weight = (("weight", i), layer.eqn.inputs[1 - layer.active_operand])
        found.append((layer.members[0], info.path, info.paths, unit))
    for i, spec in plan.nodes.items():
        if spec.kind not in RULED_KINDS or i in plan.skip:
            continue
        eqn = program.eqns[spec.first if spec.post else i]
        module = _strip(eqn.name_stack, root)
        base = f"{module}/{spec.kind}" if module else str(spec.kind)
        outs = program.eqns[i].outputs
        unit = _Unit("", i, (), None, [(("out", i), outs[0])] if len(outs) == 1 else [],
                     [(("in", i, k), eqn.inputs[k]) for k in spec.active_inputs])  # fmt: skip
        found.append((spec.first if spec.post else i, base, (module, eqn.name_stack), unit))
    found.sort(key=lambda t: t[0])
    counts: dict[str, int] = {}
    for _, base, _, _ in found:
        counts[base] = counts.get(base, 0) + 1
    seen: dict[str, int] = {}
    out = []
    for _, base, extra, unit in found:
        k = seen.get(base, 0)
        seen[base] = k + 1
        unit.name = base if counts[base] == 1 else f"{base}#{k}"
        unit.names = tuple(dict.fromkeys(n for n in (unit.name, base, *extra) if n))
        out.append(unit)
    return out


def _keys(unit: _Unit) -> list[tuple[str, str]]:
    """(key, side) of each recorded value of ``unit``."""
    keys = [(f"{unit.name}:out", "out")] if unit.outs else []
    if len(unit.ins) == 1:
        keys.append((f"{unit.name}:in", "in"))
    else:
        keys += [(f"{unit.name}:in{k}", "in") for k in range(len(unit.ins))]
    return keys


def _glob_hits(pattern: str, names: Sequence[str]) -> bool:
    for name in names:
        parts = name.split("/")
        if any(path_matches(pattern, "/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            return True
    return False


def _available(all_units: list[_Unit], params: bool = False) -> str:
    if params:
        names = [u.name for u in all_units if u.weight is not None]
    else:
        names = [key for u in all_units for key, _ in _keys(u)]
    shown = ", ".join(repr(n) for n in names[:60])
    more = f", ... ({len(names) - 60} more)" if len(names) > 60 else ""
    return f"available: {shown}{more}" if names else "this program has no recordable units"


def _as_list(selector: Any) -> list[Any]:
    if isinstance(selector, (str, int, LayerInfo)):
        return [selector]
    if isinstance(selector, Sequence):
        return list(selector)
    raise TypeError(
        f"record selectors are 'all', glob strings, layer indices or LayerInfo (or a list of "
        f"them), got {type(selector).__name__}"
    )


def _select(
    all_units: list[_Unit], plan: Plan, selector: Any, params: bool
) -> dict[str, set[str]]:
    """Unit name -> the sides (``"out"``, ``"in"``) selected; ``params``: weight layers only."""
    what = "record_params" if params else "record"
    pool = [u for u in all_units if u.weight is not None] if params else all_units
    chosen: dict[str, set[str]] = {}
    for item in _as_list(selector):
        sides = {"out", "in"}
        if isinstance(item, bool):
            raise TypeError(f"{what}: {item!r} is not a selector (use True only for "
                            "record_params)")  # fmt: skip
        if isinstance(item, str) and item == "all":
            hits = pool
        elif isinstance(item, str):
            pattern = item
            if not params and ":" in item:
                pattern, side = item.rsplit(":", 1)
                if side not in ("out", "in"):
                    raise ValueError(f"{what}: {item!r} ends in ':{side}'; use ':out' or ':in'")
                sides = {side}
            hits = [u for u in pool if _glob_hits(pattern, u.names)]
        else:
            hits = _layer_hits(pool, plan, item, what, all_units, params)
        if not hits:
            raise ValueError(
                f"{what}={item!r} selects nothing in this program; "
                f"{_available(all_units, params)}"
            )
        for u in hits:
            chosen.setdefault(u.name, set()).update(sides)
    return chosen


def _layer_hits(
    pool: list[_Unit], plan: Plan, item: Any, what: str, all_units: list[_Unit], params: bool
) -> list[_Unit]:
    every = list(plan.all_layers())
    if isinstance(item, LayerInfo):
        index = item.index
    elif isinstance(item, int):
        index = item + len(every) if item < 0 else item
        if not 0 <= index < len(every):
            raise ValueError(f"{what}={item}: the program has {len(every)} layers; "
                             f"{_available(all_units, params)}")  # fmt: skip
    else:
        raise TypeError(f"{what}: {item!r} is not a selector ('all', a glob string, a layer "
                        "index or a LayerInfo)")  # fmt: skip
    hits = [u for u in pool if u.info is not None and u.info.index == index]
    if not hits and index < len(every) and every[index].info.loop:
        raise ValueError(
            f"{what}={item!r}: layer {index} ({every[index].info.path}) is inside "
            f"{every[index].info.loop}, whose bodies are not recorded; "
            f"{_available(all_units, params)}"
        )
    return hits


def is_epsilon_family(rule: Any) -> bool:
    """Whether ``rule`` is LRP-0/ε-like: one group of one plain term ``a w / stab(z)``."""
    if not isinstance(rule, ModifiedRule):
        return False
    groups = rule.groups()
    return (len(groups) == 1 and groups[0].coefficient == 1.0 and groups[0].mask is None
            and len(groups[0].terms) == 1 and _is_plain(groups[0].terms[0]))  # fmt: skip


def weight_cotangent(rule: Any, ctx: LayerContext, relevance: Array) -> Array:
    """``c_w = (∂ f(a; w)/∂w)ᵀ s`` with ``s = R / stab(z)`` (ε family), so that the weights'
    relevance is ``R_w = w ⊙ c_w`` (called by the interpreter for recorded weights)."""
    if not is_epsilon_family(rule):
        raise RuleError(f"parameter relevance is defined for the ε-rule family, not {rule!r}")
    eps = rule.stabilizer_for(ctx)
    s = _divide(relevance, stabilize(ctx.z, eps, rule.clip), eps)
    _, pull = jax.vjp(lambda w: ctx.apply(ctx.a, w), ctx.w)
    (c_w,) = pull(s.astype(ctx.z.dtype))
    return c_w


@dataclasses.dataclass
class Recorder:
    """The probes one recording needs (internal; built by :func:`jaxlrp.lrp`).

    ``probe(probes, seen)`` is the ``evaluate`` hook: it adds a zero array at each recorded site
    and keeps the site's value in ``seen``; the cotangent of a probe is the modified gradient
    ``c`` there, and :meth:`collect` turns it into relevance ``v ⊙ c``.
    """

    sites: dict[Site, Any]  # site -> program var (shape and dtype of its zero probe)
    layers: list[tuple[str, list[Site], Site | None]]  # key, value sites, tap site
    params: list[tuple[str, Site]]
    weights: frozenset[int]

    def zeros(self) -> dict[Site, Array]:
        return {s: jnp.zeros(v.shape, v.dtype) for s, v in self.sites.items()}

    def probe(self, probes: dict[Site, Array], seen: dict[Site, Array]) -> Callable:
        def hook(site: Site, value: Array) -> Array:
            zero = probes.get(site)
            if zero is None:
                return value
            if jnp.shape(value) != zero.shape:  # pragma: no cover - plan/run mismatch
                raise AssertionError(f"record probe {site}: {jnp.shape(value)} != {zero.shape}")
            seen[site] = value
            return value + zero.astype(jnp.result_type(value))

        return hook

    def collect(self, seen: dict[Site, Array], cotangents: dict[Site, Array],
                input_relevance: Any) -> Recorded:  # fmt: skip
        """The recorded relevance from the probes' values and cotangents."""

        def at(site: Site) -> Array:
            c = cotangents[site]
            v = seen.get(site)
            return jnp.zeros_like(c) if v is None else v * c

        layers = {}
        for key, value_sites, tap in self.layers:
            (site,) = value_sites
            r = at(site)
            if tap is not None and tap in seen:
                r = r + cotangents[tap]
            layers[key] = r
        params = {key: at(site) for key, site in self.params}
        return Recorded(input_relevance, layers, params)


def build_recorder(plan: Plan, composite: Any, record: Any, record_params: Any) -> Recorder | None:
    """The :class:`Recorder` for ``record``/``record_params`` (None when both ask nothing).

    Raises:
      ValueError: for a selector matching nothing (listing the available names), or parameter
        relevance asked of a layer whose rule is not of the ε family.
    """
    if record is None and (record_params is None or record_params is False):
        return None
    all_units = units(plan)
    chosen = _select(all_units, plan, record, False) if record is not None else {}
    wanted: dict[str, set[str]] = {}
    if record_params is not None and record_params is not False:
        selector = "all" if record_params is True else record_params
        wanted = _select(all_units, plan, selector, True)
    sites: dict[Site, Any] = {}
    layers: list[tuple[str, list[Site], Site | None]] = []
    params: list[tuple[str, Site]] = []
    weights = set()
    for unit in all_units:
        sides = chosen.get(unit.name, set())
        keys = _keys(unit)
        values = [*unit.outs, *unit.ins]
        for (key, side), (site, var) in zip(keys, values, strict=True):
            if side not in sides:
                continue
            sites[site] = var
            tap = None
            if side == "in" and unit.tap is not None:
                tap = unit.tap[0]
                sites[tap] = unit.tap[1]
            layers.append((key, [site], tap))
        if unit.name in wanted:
            rule = composite.layer_rule(unit.info)
            if not is_epsilon_family(rule):
                raise ValueError(
                    f"record_params: layer {unit.name!r} has rule {rule!r}; parameter relevance "
                    "(R_w = Σ a_i w_ij R_j / stab(z_j)) is defined for the ε-rule family only "
                    "(Zero, Epsilon, RelativeEpsilon). Select other layers or use an ε rule there."
                )
            site, var = unit.weight
            sites[site] = var
            params.append((unit.name, site))
            weights.add(unit.anchor)
    return Recorder(sites, layers, params, frozenset(weights))


def recordable(
    fn: Callable[..., Array], *args: Any, argnums: int | Sequence[int] = -1, record: Any = "all"
) -> list[str]:
    """The keys of ``Recorded.layers`` that ``record`` selects for ``fn(*args)`` (every key for
    ``"all"``), in program order, without running the explanation (see :mod:`jaxlrp.record`).

    Raises:
      ValueError: for a selector matching nothing (listing the available names).
    """
    from jaxlrp.explain import _as_function, _trace

    call, call_args, nums = _as_function(fn, args, argnums)
    plan = _trace(call, call_args, nums).plan
    all_units = units(plan)
    chosen = _select(all_units, plan, record, False)
    return [key for unit in all_units for key, side in _keys(unit)
            if side in chosen.get(unit.name, ())]  # fmt: skip


def selector_key(selector: Any) -> Any:
    """A hashable form of a ``record``/``record_params`` selector (for explain's compile
    cache): lists become tuples."""
    if isinstance(selector, (list, tuple)):
        return ("seq", tuple(selector_key(s) for s in selector))
    try:
        hash(selector)
    except TypeError:  # not a selector: tracing the explanation raises the clear error
        return ("id", id(selector))
    return selector
