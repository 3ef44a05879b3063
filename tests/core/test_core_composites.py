"""Composites map rules to layers by path, position and kind, with a documented precedence."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from nets import SmallCNN, images, init

import jaxlrp
from jaxlrp import composites, rules
from jaxlrp.composites import path_matches


@dataclasses.dataclass(frozen=True)
class Blocked(rules.LayerRule):
    """A probe rule: lets no relevance through its layer."""

    def __call__(self, ctx, relevance):
        return rules.Relevance(times_input=jnp.zeros_like(ctx.a))


class TwoBranches(nn.Module):
    @nn.compact
    def __call__(self, x):
        left = nn.relu(nn.Dense(6, name="left")(x[:, :4]))
        right = nn.relu(nn.Dense(6, name="right")(x[:, 4:]))
        return nn.Dense(3, name="head")(left + right)


def test_path_rule_changes_only_the_layer_it_names():
    model = TwoBranches()
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 8))
    variables = init(model, x)
    base = composites.Composite(rules.Epsilon())
    blocked = composites.Composite(rules.Epsilon(), paths={"left": Blocked()})
    r_base = jaxlrp.explain(model.apply, variables, x, target=0, composite=base)
    r_blocked = jaxlrp.explain(model.apply, variables, x, target=0, composite=blocked)
    np.testing.assert_array_equal(r_blocked[:, :4], 0.0)  # the left branch is cut off
    np.testing.assert_allclose(r_blocked[:, 4:], r_base[:, 4:], rtol=1e-6)  # the right unchanged
    assert np.abs(r_base[:, :4]).sum() > 0


def test_glob_patterns():
    assert path_matches("*/Conv_0", "Net/Conv_0")
    assert not path_matches("*/Conv_0", "Net/Block_0/Conv_0")
    assert path_matches("**/Conv_0", "Net/Block_0/Conv_0")
    assert path_matches("backbone/**", "backbone/stage1/Conv_3")
    assert not path_matches("backbone/**", "head/Dense_0")
    assert path_matches("Dense_?", "Dense_1")


def test_precedence_select_then_path_then_position_then_kind_then_default():
    model = SmallCNN()
    x = images((1, 12, 12, 3))
    variables = init(model, x)
    layers = jaxlrp.layers(model.apply, variables, x)
    assert [(l.path, l.kind, l.is_first, l.is_last) for l in layers] == [
        ("Conv_0", "conv", True, False),
        ("Conv_1", "conv", False, False),
        ("Dense_0", "dense", False, False),
        ("Dense_1", "dense", False, True),
    ]
    composite = composites.Composite(
        default=rules.Zero(),
        conv=rules.Gamma(),
        first=rules.Flat(),
        last=rules.Epsilon(0.5),
        paths=[("Conv_*", rules.ZPlus()), ("Dense_1", rules.WSquare())],
        select=lambda layer: rules.AlphaBeta() if layer.path == "Conv_1" else None,
    )
    chosen = {l.path: composite.explain_choice(l) for l in layers}
    assert chosen["Conv_1"] == (rules.AlphaBeta(), "select")
    assert chosen["Conv_0"] == (rules.ZPlus(), "path 'Conv_*'")  # path beats first
    assert chosen["Dense_1"] == (rules.WSquare(), "path 'Dense_1'")  # path beats last
    assert chosen["Dense_0"] == (rules.Zero(), "default")
    no_paths = dataclasses.replace(composite, paths=(), select=None)
    assert no_paths.explain_choice(layers[0]) == (rules.Flat(), "first")  # first beats kind
    assert no_paths.explain_choice(layers[3]) == (rules.Epsilon(0.5), "last")
    assert no_paths.explain_choice(layers[1]) == (rules.Gamma(), "conv")
    assert composites.Composite().explain_choice(layers[2])[0] == rules.Epsilon()


def test_default_composite_is_epsilon_everywhere():
    model = SmallCNN()
    x = images((2, 12, 12, 3))
    variables = init(model, x)
    np.testing.assert_allclose(
        jaxlrp.explain(model.apply, variables, x, target=1),
        jaxlrp.explain(model.apply, variables, x, target=1,
                       composite=composites.Composite(default=rules.Epsilon())),
        rtol=1e-6,
    )


def test_rule_table_lists_every_layer_with_its_rule():
    model = SmallCNN()
    x = images((1, 12, 12, 3))
    variables = init(model, x)
    table = jaxlrp.rule_table(
        model.apply, variables, x, composite=composites.EpsilonGammaBox(low=-1.0, high=1.0)
    )
    lines = table.splitlines()
    assert "Conv_0 (first)" in lines[1] and "ZBox" in lines[1]
    assert "Conv_1" in lines[2] and "Gamma" in lines[2]
    assert "Dense_0" in lines[3] and "Epsilon" in lines[3]
    assert "Dense_1 (last)" in lines[4] and "Epsilon" in lines[4]
    assert any("activation" in line and "Pass" in line for line in lines)
    assert any("max" in line and "WinnerTakesAll" in line for line in lines)
    assert any("sum" in line and "Norm" in line for line in lines)


def test_depth_recipe_assigns_rules_by_depth():
    class Deep(nn.Module):
        @nn.compact
        def __call__(self, x):
            for _ in range(5):
                x = nn.relu(nn.Conv(4, (3, 3))(x))
            x = x.reshape(x.shape[0], -1)
            return nn.Dense(3)(x)

    model = Deep()
    x = images((1, 8, 8, 3))
    variables = init(model, x)
    recipe = composites.DepthRecipe(low=-1.0, high=1.0, gamma_convs=3)
    names = [type(recipe.layer_rule(l)).__name__ for l in jaxlrp.layers(model.apply, variables, x)]
    assert names == ["ZBox", "Gamma", "Gamma", "RelativeEpsilon", "RelativeEpsilon", "Zero"]
    r = jaxlrp.explain(model.apply, variables, x, target=0, composite=recipe)
    assert np.all(np.isfinite(r))


def test_composite_rejects_non_rules():
    with pytest.raises(TypeError, match="layer rule"):
        composites.Composite(default="epsilon")
    with pytest.raises(TypeError, match="layer rule"):
        composites.Composite(paths={"Conv_0": rules.Pass()})
