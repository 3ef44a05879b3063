"""The bodies of ``scan`` and ``cond`` equations, as programs, and how their operands split.

``graph.py`` analyses the bodies as part of the whole program; ``interpreter.py`` evaluates them
inside ``lax.scan``/``lax.switch`` with the same rules.
"""

from __future__ import annotations

import ast
from typing import Any

import jax
from jax.extend import core as jcore

from jaxlrp.tracing import Eqn, Program, program_from_jaxpr


def scan_partition(params: dict[str, Any]) -> tuple[int, int]:
    """(number of constants, number of carries) of a ``scan`` equation's operands; the rest are
    the scanned inputs. JAX < 0.11 names them ``num_consts``/``num_carry``; JAX >= 0.11 gives an
    operand tree ``ft_in = (consts, carry, xs)`` of placeholder leaves."""
    if "num_carry" in params:
        return params.get("num_consts", 0), params["num_carry"]
    ft_in = params["ft_in"]
    try:
        parts = ast.literal_eval(str(ft_in))
    except (ValueError, SyntaxError) as error:
        raise NotImplementedError(
            f"jaxlrp does not understand this JAX version's scan parameters (ft_in={ft_in!r})"
        ) from error

    def count(tree: Any) -> int:
        return len(jax.tree_util.tree_leaves(tree, is_leaf=lambda x: x is None))

    return count(parts[0]), count(parts[1])


def body_programs(eqn: Eqn) -> list[Program]:
    """The body (``scan``) or the branches (``cond``) of a control-flow equation, as programs
    whose equations carry the equation's name stack."""
    if eqn.name == "cond":
        closed = list(eqn.params["branches"])
    else:
        body = eqn.params["jaxpr"]
        closed = [body if isinstance(body, jcore.ClosedJaxpr) else jcore.ClosedJaxpr(body, ())]
    return [program_from_jaxpr(c, prefix=eqn.name_stack) for c in closed]


def loop_label(eqn: Eqn, branch: int = 0) -> str:
    """How a layer inside ``eqn`` is marked: ``"scan(length=8)"``, ``"cond[1]"``."""
    if eqn.name == "scan":
        return f"scan(length={eqn.params['length']})"
    return f"{eqn.name}[{branch}]"
