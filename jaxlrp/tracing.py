"""Tracing: turn a function into a flat program of primitive equations.

`trace` calls :func:`jax.make_jaxpr` on abstract shapes of the arguments and then *inlines* every
call-like primitive (``jit``/``pjit``, ``custom_jvp_call``, ``custom_vjp_call``, ``remat``/
``checkpoint``, ``closed_call``), so that a ReLU hidden inside ``jax.nn.relu``'s custom JVP or a
layer inside a jitted sub-function is seen as the primitive it is. Control flow (``scan``,
``cond``) is kept as one equation whose bodies are traced lazily by the interpreter.

The result is a :class:`Program`: our own small, immutable-by-convention copy of a jaxpr with
fresh variables (a sub-jaxpr called twice gets two sets of variables), each equation carrying the
Flax/JAX name stack it came from.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

import jax
from jax.extend import core as jcore

from jaxlrp.primitives import lookup

_ids = itertools.count()


class Var:
    """A program variable: an abstract value with identity."""

    __slots__ = ("aval", "id")

    def __init__(self, aval: Any):
        self.aval = aval
        self.id = next(_ids)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.aval.shape)

    @property
    def dtype(self) -> Any:
        return self.aval.dtype

    def __repr__(self) -> str:
        return f"v{self.id}:{self.aval.str_short()}"


@dataclasses.dataclass(frozen=True, eq=False)
class Const:
    """A constant operand (a jaxpr literal or a closed-over constant)."""

    value: Any

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(jax.numpy.shape(self.value))

    @property
    def dtype(self) -> Any:
        return jax.numpy.result_type(self.value)


Atom = Var | Const


@dataclasses.dataclass(eq=False)
class Eqn:
    """One primitive application ``outputs = primitive.bind(*inputs, **params)``."""

    primitive: Any
    inputs: list[Atom]
    outputs: list[Var]
    params: dict[str, Any]
    name_stack: str

    @property
    def name(self) -> str:
        return self.primitive.name

    def describe(self) -> str:
        """Primitive, shapes and module, as used in error messages."""
        ins = ", ".join(_shape_str(a) for a in self.inputs)
        outs = ", ".join(_shape_str(v) for v in self.outputs)
        where = self.name_stack or "<top level>"
        return f"primitive '{self.name}' ({ins}) -> ({outs}) in module '{where}'"


@dataclasses.dataclass(eq=False)
class Program:
    """A flat list of equations with inputs and outputs; call-like primitives are inlined."""

    inputs: list[Var]
    outputs: list[Atom]
    eqns: list[Eqn]


def _shape_str(atom: Atom) -> str:
    dtype = getattr(atom.dtype, "name", str(atom.dtype))
    return f"{dtype}{list(atom.shape)}"


def _body(eqn: Any) -> tuple[Any, Sequence[Any]] | None:
    """The (jaxpr, consts) an inlinable call-like equation runs, or None."""
    entry = lookup(eqn.primitive.name)
    key = entry.body if entry is not None else None
    if not key:
        return None
    body = eqn.params[key]
    if isinstance(body, jcore.ClosedJaxpr):
        return body.jaxpr, body.consts
    return body, ()


def _join(prefix: str, name: str) -> str:
    return "/".join(p for p in (prefix, name) if p)


def _inline(
    jaxpr: Any, consts: Sequence[Any], args: Sequence[Atom], prefix: str, out: list[Eqn]
) -> list[Atom]:
    env: dict[Any, Atom] = {}
    for v, c in zip(jaxpr.constvars, consts, strict=True):
        env[v] = Const(c)
    for v, a in zip(jaxpr.invars, args, strict=True):
        env[v] = a

    def read(x: Any) -> Atom:
        if isinstance(x, jcore.Literal):
            return Const(x.val)
        return env[x]

    for eqn in jaxpr.eqns:
        inputs = [read(x) for x in eqn.invars]
        name_stack = _join(prefix, str(eqn.source_info.name_stack))
        body = _body(eqn)
        if body is not None:
            results = _inline(body[0], body[1], inputs, name_stack, out)
            for v, r in zip(eqn.outvars, results, strict=True):
                if not isinstance(v, jcore.DropVar):
                    env[v] = r
            continue
        outputs = [Var(v.aval) for v in eqn.outvars]
        for v, nv in zip(eqn.outvars, outputs, strict=True):
            if not isinstance(v, jcore.DropVar):
                env[v] = nv
        out.append(Eqn(eqn.primitive, inputs, outputs, dict(eqn.params), name_stack))
    return [read(x) for x in jaxpr.outvars]


def program_from_jaxpr(closed: Any, prefix: str = "") -> Program:
    """Build a flat :class:`Program` from a ``ClosedJaxpr``, inlining call-like primitives."""
    inputs = [Var(v.aval) for v in closed.jaxpr.invars]
    eqns: list[Eqn] = []
    outputs = _inline(closed.jaxpr, closed.consts, inputs, prefix, eqns)
    return Program(inputs, outputs, eqns)


def trace(fn: Any, flat_args: Sequence[Any], treedef: Any) -> tuple[Program, Any]:
    """Trace ``fn(*args)`` on abstract shapes; return the program and the output tree.

    Works inside an outer ``jit``/``vmap`` trace: only shapes and dtypes of ``flat_args`` are used.
    """

    def flat_fn(*leaves: Any) -> Any:
        return fn(*jax.tree_util.tree_unflatten(treedef, leaves))

    specs = [jax.ShapeDtypeStruct(jax.numpy.shape(x), jax.numpy.result_type(x)) for x in flat_args]
    closed, out_shape = jax.make_jaxpr(flat_fn, return_shape=True)(*specs)
    return program_from_jaxpr(closed), jax.tree_util.tree_structure(out_shape)
