"""Checks of a call to :func:`~jaxlrp.explain` / :func:`~jaxlrp.lrp` against common mistakes.

Each check is a small function of what the call was given (and, for the last ones, of the traced
program); it returns the value to use, or raises :class:`~jaxlrp.errors.UsageError` (a
``ValueError`` and a ``TypeError``) or warns with :class:`~jaxlrp.errors.UsageWarning`, in both
cases naming what is wrong and how to fix it. A valid call passes every check unchanged.

What is accepted, refused, or warned about:

* ``composite``: a :class:`~jaxlrp.composites.Composite` (or any object with ``layer_rule`` and
  ``node_rule``); a preset name (``"epsilon-plus"``, ``"EpsilonPlus"``: see
  :func:`jaxlrp.composites.get`; presets needing bounds say so); a single layer rule, which is
  *accepted* as the rule of every layer (``rules.Epsilon(0.1)`` means
  ``Composite(default=rules.Epsilon(0.1))``). Refused: a preset's function or a rule class left
  uncalled (``composites.EpsilonPlus``: "call it"), a node rule, anything else.
* ``fn``: an unbound Flax linen module is refused (its ``apply`` is meant); keyword arguments for
  ``fn`` (``train=False``, ``mutable=``, ``rngs=``) are refused with the ``functools.partial``
  that passes them.
* arguments: Flax variables after the input of a linen ``apply`` (swapped) are refused; for other
  functions, explaining a variables dict (``{"params": ...}``) while an array argument is left
  unexplained warns. An integer image (``uint8``, or integers with three or more axes) that
  indexes no embedding lookup is refused with the advice to preprocess it.
* ``target=None`` is refused.
* the output: a tuple/pytree output is refused (pick the logits with a ``lambda``). A 1-D output
  is read as ``(classes,)``; when the explained input has a leading axis of the same length (it
  looks like a ``(batch,)`` regression output) and the target is an index, it *warns* (the call
  explains one example); with ``batched=True`` it is *refused* (an index has no class axis to
  pick from); ``batched=False`` says the axis is classes and silences the warning.
* training mode *warns*: random numbers in the program (active dropout), or a normalization by
  statistics reduced over the batch axis (batch norm with ``use_running_average=False``).
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxlrp.errors import UsageError, UsageWarning

__all__ = [
    "check_arguments",
    "check_call",
    "check_composite",
    "check_explain",
    "check_function",
    "check_integer_inputs",
    "check_keywords",
    "check_output",
    "check_output_tree",
    "check_program",
    "check_target",
    "output_shape",
]


_INFERENCE_MODE = (
    "run the model in inference mode: flax.linen: functools.partial(model.apply, train=False) "
    "(or the model's own flag setting nn.Dropout(deterministic=True) and "
    "nn.BatchNorm(use_running_average=True)); flax.nnx: model.eval(); Equinox: "
    "eqx.nn.inference_mode(model); Haiku: is_training=False"
)


# --- entry points ----------------------------------------------------------------------------


def check_explain(
    fn: Any, args: tuple, kwargs: Mapping[str, Any], target: Any, composite: Any, argnums: Any
) -> Any:
    """The checks of an ``explain`` call that need no tracing; the composite to use.

    Args:
      fn, args, target, composite, argnums: as given to ``explain``.
      kwargs: keyword arguments ``explain`` does not know (meant for ``fn``, or mistyped).
    """
    check_call(fn, args, kwargs, argnums, "explain")
    check_target(target)
    return check_composite(composite)


def check_call(fn: Any, args: tuple, kwargs: Mapping[str, Any], argnums: Any, api: str) -> None:
    """The checks of ``fn``, its arguments and stray keyword arguments (``api``: ``"explain"``
    or ``"lrp"``, for messages)."""
    check_function(fn)
    check_keywords(kwargs, api)
    check_arguments(fn, args, argnums)


# --- composite -------------------------------------------------------------------------------


def check_composite(composite: Any) -> Any:
    """The composite to use for ``composite``: itself, a preset by name, or a layer rule as the
    rule of every layer (``Composite(default=rule)``).

    Raises:
      UsageError: for a preset function or rule class left uncalled, a node rule, or a value
        that is no composite.
    """
    from jaxlrp import composites
    from jaxlrp.rules.base import LayerRule
    from jaxlrp.rules.nodes import NodeRule

    if composite is None or isinstance(composite, composites.Composite):
        return composite
    if isinstance(composite, str):
        return composites.get(composite)
    if isinstance(composite, LayerRule):
        return composites.Composite(default=composite)
    if isinstance(composite, NodeRule):
        return _refuse(
            f"composite={composite!r} is a node rule (activations, sums, products); give it to "
            f"a composite by node kind, e.g. Composite(activation={composite!r})"
        )
    if hasattr(composite, "layer_rule") and hasattr(composite, "node_rule"):
        return composite  # a user-defined composite
    if isinstance(composite, type) and issubclass(composite, (LayerRule, NodeRule)):
        name = composite.__name__
        return _refuse(
            f"composite=rules.{name} is a rule class, not a rule: call it, "
            f"composite=rules.{name}() (the rule of every layer), or "
            f"composite=Composite(default=rules.{name}())"
        )
    if callable(composite):
        name = getattr(composite, "__name__", None)
        if name is not None and getattr(composites, name, None) is composite:
            call = f"composites.{name}(low=..., high=...)" if _needs_bounds(composite) else (
                f"composites.{name}()")  # fmt: skip
            return _refuse(
                f"composite=composites.{name} is the function that builds the composite; "
                f"call it: composite={call}"
            )
        return _refuse(
            f"composite={composite!r} is a function, not a composite; if it builds one, call it "
            "(composite=make_composite()), or give a Composite, a preset name "
            f"({', '.join(composites.names()[:3])}, ...) or a layer rule"
        )
    return _refuse(
        f"composite must be a Composite (e.g. composites.EpsilonPlus()), a preset name such as "
        f"'epsilon-plus', or a layer rule such as rules.Epsilon(); got "
        f"{type(composite).__name__} {composite!r}"
    )


def _needs_bounds(factory: Callable) -> bool:
    import inspect

    try:
        return "low" in inspect.signature(factory).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return False


# --- fn and its arguments --------------------------------------------------------------------


def _linen_module(obj: Any) -> Any:
    """``obj`` if it is a Flax linen module, else None (and None without Flax)."""
    try:
        import flax.linen as nn
    except ImportError:  # pragma: no cover
        return None
    return obj if isinstance(obj, nn.Module) else None


def _linen_apply(fn: Any) -> Any:
    """The linen module whose ``apply`` ``fn`` is, or None."""
    owner = getattr(fn, "__self__", None)
    func = getattr(fn, "__func__", None)
    if _linen_module(owner) is not None and getattr(func, "__name__", "") == "apply":
        return owner
    return None


def check_function(fn: Any) -> None:
    """Refuse an unbound Flax linen module (``model`` for ``model.apply``) or a non-callable.

    A bound linen module (``model.bind(variables)``) and an nnx module are called as they are.
    """
    module = _linen_module(fn)
    if module is not None and getattr(module, "scope", None) is None:
        name = type(module).__name__
        _refuse(
            f"fn is a Flax linen module ({name}) that holds no parameters; jaxlrp calls "
            f"fn(*args), so pass its apply function and the variables: "
            f"jaxlrp.explain(model.apply, variables, x, target=...) (variables = "
            f"model.init(key, x))"
        )
    if not callable(fn):
        hint = (" (variables go after the function: explain(model.apply, variables, x, ...))"
                if isinstance(fn, Mapping) else "")  # fmt: skip
        _refuse(f"fn must be a function (e.g. model.apply), got {type(fn).__name__}{hint}")


def check_keywords(kwargs: Mapping[str, Any], api: str = "explain") -> None:
    """Refuse keyword arguments meant for ``fn``: ``explain`` passes ``fn`` positional arguments
    only; ``functools.partial`` binds the others."""
    if not kwargs:
        return
    shown = ", ".join(f"{k}={_short(v)}" for k, v in kwargs.items())
    lines = [f"{api}() passes only positional arguments to fn, but got {shown}."]
    options = _options(api)
    close = {k: difflib.get_close_matches(k, options, n=1) for k in kwargs}
    typos = [f"{k!r} → {m[0]!r}" for k, m in close.items() if m]
    if typos:
        lines.append(f"If it was meant for {api}() itself, did you mean {', '.join(typos)}?")
    if "mutable" in kwargs:
        lines.append(
            "mutable= makes apply return (out, updated_state) and, with batch norm, normalize by "
            "the batch's own statistics (training mode); for an explanation "
            + _INFERENCE_MODE
            + ". If you need it anyway: fn=lambda v, x: model.apply(v, x, mutable=[...])[0]."
        )
    if "rngs" in kwargs:
        lines.append(
            "rngs= feeds dropout, which makes the explanation random; "
            + _INFERENCE_MODE
            + " (then no rngs are needed)."
        )
    example = ", ".join(f"{k}={_short(v)}" for k, v in kwargs.items() if k not in ("mutable",))
    if example:
        lines.append(
            f"Bind keyword arguments of fn first: jaxlrp.{api}(functools.partial(model.apply, "
            f"{example}), variables, x, ...)."
        )
    _refuse(" ".join(lines))


def _options(api: str) -> list[str]:
    import importlib
    import inspect

    function = getattr(importlib.import_module("jaxlrp.explain"), api, None)
    if function is None:  # pragma: no cover
        return []
    params = inspect.signature(function).parameters.values()
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _explained(args: tuple, argnums: Any) -> list[Any]:
    """The leaves of ``args[argnums]`` (argnums out of range are left to the caller's check)."""
    n = len(args)
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    return [leaf for a in nums if -n <= a < n for leaf in jax.tree_util.tree_leaves(args[a])]


def _is_variables(tree: Any) -> bool:
    """Whether ``tree`` looks like Flax variables: a mapping with a ``"params"`` collection."""
    return isinstance(tree, Mapping) and "params" in tree


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype") and not isinstance(x, Mapping)


def check_arguments(fn: Any, args: tuple, argnums: Any) -> None:
    """Refuse variables and input swapped for a linen ``apply``; warn when a variables dict is
    explained while an array argument is not (for other functions, explaining parameters may be
    meant)."""
    if not args:
        _refuse("no arguments to explain: give fn's arguments, explain(fn, variables, x, ...)")
    if _linen_apply(fn) is not None:
        if _is_array(args[0]) and any(_is_variables(a) for a in args[1:]):
            _refuse(
                f"the variables and the input are swapped: {type(_linen_apply(fn)).__name__}"
                f".apply takes the variables first, but argument 0 is an array of shape "
                f"{tuple(args[0].shape)} and a later argument is a variables dict; call "
                "jaxlrp.explain(model.apply, variables, x, target=...)"
            )
        return
    n = len(args)
    nums = {a % n for a in ((argnums,) if isinstance(argnums, int) else argnums) if -n <= a < n}
    if any(_is_variables(args[a]) for a in nums):
        others = [k for k in range(n) if k not in nums and _is_array(args[k])
                  and jnp.issubdtype(args[k].dtype, jnp.floating)]  # fmt: skip
        if others:
            k = others[0]
            warnings.warn(
                f"the explained argument (argnums={argnums}) is a variables dict "
                f"({{'params': ...}}) and argument {k}, an array of shape "
                f"{tuple(args[k].shape)}, is not explained: are the variables and the input "
                f"swapped? The input goes last (explain(fn, variables, x)) or is chosen with "
                f"argnums={k}. (Ignore this if you mean to explain the parameters.)",
                UsageWarning,
                stacklevel=2,
            )


def check_target(target: Any) -> None:
    """Refuse ``target=None``."""
    if target is None:
        _refuse(
            "target=None: give the class to explain, an int (one class for every example), an "
            "int array of the batch shape (one class per example, e.g. the predictions "
            "fn(*args).argmax(-1)), or a float array of the output's shape (the output "
            "relevance itself)"
        )


def check_integer_inputs(
    error: ValueError, names: Mapping[int, str], leaves: Sequence[Any]
) -> None:
    """When integer inputs index no embedding lookup (``error``, from
    :func:`~jaxlrp.embeddings.cut_at_lookups`), refuse an integer *image* (``uint8``, or three or
    more axes) with the advice to preprocess it (``names``: leaf index → its name in messages;
    ``leaves``: all argument leaves); otherwise return, and ``error`` stands."""
    for k, name in names.items():
        leaf = leaves[k]
        dtype = jnp.result_type(leaf)
        if dtype == jnp.uint8 or jnp.ndim(leaf) >= 3:
            raise UsageError(
                f"{name} has dtype {dtype} and shape {tuple(jnp.shape(leaf))} and indexes no "
                "embedding lookup: it looks like raw image pixels. Preprocess it as the model "
                "was trained: for a zoo model, info = jaxlrp.models.info(name); "
                "x = info.preprocess(image)[None] (resize, crop, normalize by the model's mean "
                "and std), or x = info.normalize(pixels) for pixels already at the input size; "
                "for your own model, its own input pipeline. A bare x.astype(jnp.float32) keeps "
                "the 0..255 range the model never saw."
            ) from error


# --- the output ------------------------------------------------------------------------------


def output_shape(out: Any) -> tuple[int, ...]:
    """The shape of ``out``, the (abstract) result of ``fn``; refuses a tuple or other pytree."""
    leaves, tree = jax.tree_util.tree_flatten(out)
    if tree.num_leaves == 1:  # an array, or a pytree holding one (as lrp accepts)
        return tuple(leaves[0].shape)
    return _refuse(_pytree_message(out, tree))


def check_output_tree(tree: Any, leaves: Sequence[Any]) -> None:
    """Refuse a traced output tree with more than one array (``leaves``: its abstract values)."""
    if tree.num_leaves != 1:
        _refuse(_pytree_message(jax.tree_util.tree_unflatten(tree, list(leaves)), tree))


def _pytree_message(out: Any, tree: Any) -> str:
    if isinstance(out, tuple):
        parts = ", ".join(_describe(x) for x in out)
        what = f"a tuple of {len(out)} ({parts})"
    else:
        what = f"a {type(out).__name__} with {tree.num_leaves} "
        what += f"leaves ({tree})"
    return (
        f"fn must return one array of logits, e.g. (batch, classes), but it returned {what}. "
        "Pick the logits with a lambda, e.g. fn=lambda v, x: model.apply(v, x)[0] (a tuple "
        "(out, state) comes from apply(..., mutable=[...]): for an explanation prefer "
        "inference mode, functools.partial(model.apply, train=False))"
    )


def _index(target: Any) -> str:
    """``target=<value>`` for a concrete target, else ``an int target``."""
    try:
        return f"target={int(target)}"
    except (TypeError, jax.errors.ConcretizationTypeError):
        return "an int target"


def _describe(x: Any) -> str:
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"{jnp.dtype(x.dtype).name}{list(x.shape)}"
    return type(x).__name__


def check_output(
    shape: tuple[int, ...], target: Any, batched: bool | None, args: tuple, argnums: Any
) -> None:
    """A 1-D output is ``(classes,)``. When an index target meets a 1-D output whose length is
    the leading axis of an explained input (a ``(batch,)`` regression output, probably): refuse
    with ``batched=True``, warn with ``batched=None``, accept with ``batched=False``."""
    if len(shape) != 1 or batched is False or target is None:
        return
    dtype = jnp.result_type(target)
    if not (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.bool_)):
        return
    fix = (
        f"For one output per example, return out[:, None] (shape ({shape[0]}, 1)) and use "
        "target=0, or pass the output as a float target (target=fn(*args): each example's own "
        "output is its relevance)"
    )
    if batched:
        _refuse(
            f"batched=True but fn's output has shape {shape}: an int target picks an entry of "
            f"the last (class) axis, here the batch axis, so it would explain one example. {fix}."
        )
    n = shape[0]
    if n > 1 and any(jnp.ndim(x) >= 2 and jnp.shape(x)[0] == n for x in _explained(args, argnums)):
        warnings.warn(
            f"fn's output has shape {shape}, read as ({n} classes,), and the explained input has "
            f"a leading axis of {n}: if that is the batch, {_index(target)} explains the output "
            f"of one example only. {fix}. Pass batched=False if the axis really is "
            "classes.",
            UsageWarning,
            stacklevel=2,
        )


# --- the traced program ----------------------------------------------------------------------


def check_program(program: Any, explained: Sequence[int]) -> None:
    """Warn when the traced program looks like a model in training mode: it draws random numbers
    (active dropout), or normalizes by statistics reduced over axis 0 of a value computed from
    the explained inputs (batch norm with ``use_running_average=False``)."""
    eqn = _dropout(program, explained)
    if eqn is not None:
        where = eqn.name_stack or "<top level>"
        warnings.warn(
            f"the model applies random numbers to its activations ('{eqn.name}' in module "
            f"'{where}'): "
            f"dropout seems active, so the explanation changes from call to call; "
            f"{_INFERENCE_MODE}.",
            UsageWarning,
            stacklevel=2,
        )
    eqn = _batch_statistics(program, explained)
    if eqn is not None:
        warnings.warn(
            f"the model normalizes by statistics of the batch ('{eqn.name}' in module "
            f"'{eqn.name_stack or '<top level>'}' of a mean over axis 0): batch norm in training "
            f"mode (use_running_average=False) makes each example's explanation depend on the "
            f"others; {_INFERENCE_MODE}. (Ignore this if axis 0 is no batch axis.)",
            UsageWarning,
            stacklevel=2,
        )


def _dropout(program: Any, explained: Sequence[int]) -> Any:
    """The first equation that combines random numbers drawn at the full shape of a value
    computed from the explained inputs with that value (a dropout mask), or None. Random
    numbers drawn at another shape and broadcast (a weight or scale made inside ``fn``) are
    not dropout."""
    from jaxlrp.tracing import Var

    tainted = {program.inputs[k] for k in explained}
    drawn: set[Any] = set()
    for eqn in program.eqns:
        ins = [x for x in eqn.inputs if isinstance(x, Var)]
        masks = [x for x in ins if x in drawn]
        if masks and any(x in tainted and x.shape == masks[0].shape for x in ins):
            return eqn
        if eqn.name == "random_bits" or (
            masks and all(v.shape == masks[0].shape for v in eqn.outputs)
        ):
            drawn.update(eqn.outputs)
        if any(x in tainted for x in ins):
            tainted.update(eqn.outputs)
    return None


def _batch_statistics(program: Any, explained: Sequence[int]) -> Any:
    """The first ``rsqrt``/``sqrt`` of a value derived from a reduction over axis 0 (keeping the
    last axis) of a value computed from the explained inputs, or None."""
    from jaxlrp.tracing import Var

    tainted = {program.inputs[k] for k in explained}
    stats: set[Any] = set()
    for eqn in program.eqns:
        ins = [x for x in eqn.inputs if isinstance(x, Var)]
        if eqn.name in ("rsqrt", "sqrt") and any(x in stats for x in ins):
            return eqn
        if any(x in stats for x in ins):
            stats.update(eqn.outputs)
        if any(x in tainted for x in ins):
            tainted.update(eqn.outputs)
            if eqn.name == "reduce_sum" and ins and ins[0] in tainted:
                ndim = len(ins[0].shape)
                axes = tuple(a % ndim for a in eqn.params.get("axes", ()))
                if ndim >= 2 and 0 in axes and ndim - 1 not in axes:
                    stats.update(eqn.outputs)
    return None


def _refuse(message: str) -> Any:
    raise UsageError(message)
