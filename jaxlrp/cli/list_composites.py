"""``jaxlrp composites``: the composite presets and their rules, or the rule of every layer
of a model."""

from __future__ import annotations

import argparse

from jaxlrp.cli.errors import CLIError

_RULE_FIELDS = ("select", "first", "last", "conv", "dense", "default", "activation", "sum",
                "maxpool", "product", "gate", "affine", "norm", "softmax", "attention")  # fmt: skip


class _Bound(float):
    """A placeholder input bound that prints as its name (``low`` / ``high``)."""

    def __new__(cls, value: float, name: str) -> _Bound:
        bound = super().__new__(cls, value)
        bound.label = name
        return bound

    def __repr__(self) -> str:
        return self.label


def _describe_composite(name: str) -> str:
    from jaxlrp import composites, demo

    factory = composites.PRESETS[name]
    summary = (factory.__doc__ or "").strip().splitlines()[0]
    if demo.needs_bounds(name):
        composite = factory(low=_Bound(-1.0, "low"), high=_Bound(1.0, "high"))
        summary += " [low, high: the model's input range]"
    else:
        composite = factory()
    lines = [f"{name}  ({composite.name})", f"    {summary}"]
    for field in _RULE_FIELDS:
        value = getattr(composite, field)
        if value is None:
            continue
        shown = "a function of the layer (see above)" if field == "select" else repr(value)
        lines.append(f"    {field:<11} {shown}")
    if composite.paths:
        lines.append(f"    {'paths':<11} {composite.paths!r}")
    return "\n".join(lines)


def _cmd_composites(args: argparse.Namespace) -> int:
    """List the composite presets with the rule each kind of layer and node gets.

    With --model, print the rule of every layer of that model instead (see
    :func:`jaxlrp.rule_table`).
    """
    from jaxlrp import composites, demo

    names = list(composites.PRESETS)
    if args.name is not None:
        key = composites.canonical_name(args.name)
        if key not in composites.PRESETS:
            raise CLIError(f"unknown composite {args.name!r}; valid composites: {', '.join(names)}")
        names = [key]
    if args.model is None:
        print("\n\n".join(_describe_composite(n) for n in names))
        print("\nA layer that no entry above matches gets Epsilon(). For the rule of every layer "
              "of a model: jaxlrp composites NAME --model MODEL")  # fmt: skip
        return 0
    import jax.numpy as jnp

    import jaxlrp
    from jaxlrp import models

    try:
        spec = models.info(args.model)
    except ValueError as err:
        raise CLIError(str(err)) from None
    module, variables = models.load(spec.name, None)
    x = jnp.zeros((1, *spec.input_shape), jnp.float32)
    for n in names:
        composite = demo.make_composite(n, spec.low, spec.high)
        print(f"{n} on {spec.name}:")
        print(jaxlrp.rule_table(module.apply, variables, x, composite=composite))
        print()
    return 0
