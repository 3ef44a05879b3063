"""Writing a new LRP rule in a few lines, without touching the interpreter.

A rule lists its *terms*: how the layer input is modified, how the weights and the bias are
modified, and how the terms share a denominator. jaxlrp computes the four LRP steps generically
(modified forward pass, division by the stabilized denominator, transposed layer, product with
the modified input), under jit and vmap.

Here: an "ε-γ" rule (LRP-γ with a large ε), and a rule written from scratch that gives all
relevance to the positive inputs in proportion to a⁺ · |w|.

Run:  python examples/custom_rule.py
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

import jaxlrp
from jaxlrp import composites, rules


@dataclasses.dataclass(frozen=True)
class AbsWeightPlus(rules.ModifiedRule):
    """R_j = Σ_k a_j⁺ |w_jk| / Σ_j a_j⁺ |w_jk| · R_k  (one term: input a⁺, weight |w|, no bias)."""

    stabilizer: float = 1e-6

    def groups(self):
        return (rules.Group((rules.Term(rules.positive_input, jnp.abs, None),)),)


@dataclasses.dataclass(frozen=True)
class EpsilonGamma(rules.ModifiedRule):
    """LRP-γ on positive inputs with a large stabilizer ε (absorbs weak contributions)."""

    gamma: float = 0.25
    stabilizer: float = 0.1

    def groups(self):
        def up(w):
            return w + self.gamma * jnp.maximum(w, 0)

        return (rules.Group((rules.Term(rules.positive_input, up, up),)),)


class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(8, (3, 3))(x))
        x = nn.relu(nn.Conv(8, (3, 3))(x))
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(10)(x)


def main() -> dict[str, jax.Array]:
    jaxlrp.enable_compilation_cache()  # compiled explanations are reused by later runs
    model = Net()
    x = jax.random.uniform(jax.random.PRNGKey(0), (2, 16, 16, 3))
    variables = model.init(jax.random.PRNGKey(1), x)
    composite = composites.Composite(
        first=rules.ZBox(low=0.0, high=1.0),
        conv=AbsWeightPlus(),
        dense=EpsilonGamma(),
    )
    jaxlrp.print_rules(model.apply, variables, x, composite=composite)
    relevance = jax.jit(
        lambda v, x: jaxlrp.explain(model.apply, v, x, target=3, composite=composite)
    )(variables, x)
    print("relevance per image:", relevance.sum(axis=(1, 2, 3)))
    print("target logit:       ", model.apply(variables, x)[:, 3])
    return {"relevance": relevance}


if __name__ == "__main__":
    main()
