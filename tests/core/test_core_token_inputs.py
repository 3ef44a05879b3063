"""Explaining integer token ids: relevance per token, at the output of the embedding lookup.

Every check compares with an independent computation: the model split by hand at its lookup
(``E[ids]`` computed in NumPy, fed to the same model's layers), differentiated with
``jax.grad``. Under LRP-0 on a bias-free ReLU network the relevance of the looked-up vectors is
``e ⊙ ∇_e f``, so the relevance of a token is ``Σ_features e ⊙ ∇_e f`` and the tokens' relevance
sums to the logit.
"""

import os

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxlrp
from jaxlrp import composites, rules

LRP0 = composites.Composite(default=rules.Zero(), sum=rules.Norm(0.0))
VOCAB, DIM, HIDDEN, CLASSES = 13, 5, 7, 3
IDS = jnp.array([[1, 4, 0, 12, 7, 7], [3, 0, 9, 2, 11, 5]], jnp.int32)  # (batch 2, seq 6)
TARGET = jnp.array([2, 0])
ROWS = np.arange(2)
TOL = {"rtol": 1e-5, "atol": 1e-6}  # measured: ≤ 2e-7 absolute on values of order 1e-1


class TokenClassifier(nn.Module):
    """Embed → Dense → ReLU → mean over the sequence → Dense head."""

    def setup(self):
        self.embed = nn.Embed(VOCAB, DIM)
        self.hidden = nn.Dense(HIDDEN)
        self.head = nn.Dense(CLASSES)

    def from_embeddings(self, e):
        return self.head(jnp.mean(nn.relu(self.hidden(e)), axis=-2))

    def __call__(self, ids):
        return self.from_embeddings(self.embed(ids))


MODEL = TokenClassifier()
VARIABLES = jax.tree_util.tree_map_with_path(  # zero biases: LRP-0 is exactly e ⊙ ∇f
    lambda path, v: jnp.zeros_like(v) if "bias" in jax.tree_util.keystr(path) else v,
    MODEL.init(jax.random.key(0), IDS),
)
TABLE = np.asarray(VARIABLES["params"]["embed"]["embedding"])


def from_embeddings(e):
    return MODEL.apply(VARIABLES, e, method=TokenClassifier.from_embeddings)


def logit(e_fn, e, target=TARGET):
    """The target logits of ``e_fn(e)``, summed over the batch (their gradient is per example)."""
    out = e_fn(e)
    return jnp.sum(out[ROWS, target]) if out.ndim == 2 else out[target]


def reference(e, e_fn=from_embeddings, target=TARGET):
    """``e ⊙ ∇_e f_target`` for looked-up vectors ``e`` (per feature)."""
    return np.asarray(e * jax.grad(lambda e_: logit(e_fn, e_, target))(e))


def onehot_model(params, ids):
    """The same classifier, its lookup written as a one-hot matmul."""
    e = jax.nn.one_hot(ids, VOCAB) @ params["params"]["embed"]["embedding"]
    return MODEL.apply(params, e, method=TokenClassifier.from_embeddings)


# --- relevance per token -----------------------------------------------------------------------


def test_lrp0_token_relevance_is_embedding_times_gradient_summed_over_features():
    relevance = jaxlrp.explain(MODEL.apply, VARIABLES, IDS, target=TARGET, composite=LRP0)
    assert relevance.shape == IDS.shape
    e = jnp.asarray(TABLE[np.asarray(IDS)])  # the lookup, by hand
    np.testing.assert_allclose(relevance, reference(e).sum(-1), **TOL)


def test_token_relevance_sums_to_the_logit():
    relevance = jaxlrp.explain(MODEL.apply, VARIABLES, IDS, target=TARGET, composite=LRP0)
    logits = MODEL.apply(VARIABLES, IDS)
    np.testing.assert_allclose(relevance.sum(-1), logits[ROWS, TARGET], **TOL)


def test_keep_features_gives_relevance_per_embedding_feature():
    kept = jaxlrp.explain(MODEL.apply, VARIABLES, IDS, target=TARGET, composite=LRP0,
                          keep_features=True)  # fmt: skip
    assert kept.shape == (*IDS.shape, DIM)
    np.testing.assert_allclose(kept, reference(jnp.asarray(TABLE[np.asarray(IDS)])), **TOL)
    default = jaxlrp.explain(MODEL.apply, VARIABLES, IDS, target=TARGET, composite=LRP0)
    np.testing.assert_allclose(kept.sum(-1), default, **TOL)


@pytest.mark.parametrize("composite", [LRP0, composites.EpsilonPlusFlat()],
                         ids=["lrp0", "eps-plus-flat"])  # fmt: skip
def test_one_hot_matmul_gives_the_same_token_relevance_as_the_gather(composite):
    """The lookup is the product ``one_hot(ids) @ E``: it explains like ``E[ids]`` under any
    composite (the matmul is the lookup, not a layer)."""
    gathered = jaxlrp.explain(MODEL.apply, VARIABLES, IDS, target=TARGET, composite=composite)
    one_hot = jaxlrp.explain(onehot_model, VARIABLES, IDS, target=TARGET, composite=composite)
    np.testing.assert_allclose(one_hot, gathered, **TOL)
    kept = jaxlrp.explain(onehot_model, VARIABLES, IDS, target=TARGET, composite=composite,
                          keep_features=True)  # fmt: skip
    assert kept.shape == (*IDS.shape, DIM)
    np.testing.assert_allclose(kept.sum(-1), gathered, **TOL)
    assert [layer.path for layer in jaxlrp.layers(onehot_model, VARIABLES, IDS)] == ["hidden",
                                                                                    "head"]


_E = jnp.asarray(TABLE)
_PERM = np.random.default_rng(7).permutation(VOCAB)
_LOOKUPS = {  # each computes E[ids] (batch, seq, DIM), moving the ids around first
    "flattened": lambda ids: _E[ids.reshape(-1)].reshape(*ids.shape, DIM),
    "time-major": lambda ids: jnp.swapaxes(jnp.take(_E, ids.T, axis=0), 0, 1),
    "reversed": lambda ids: _E[ids[:, ::-1]][:, ::-1],
    "broadcast": lambda ids: jnp.mean(_E[jnp.broadcast_to(ids[:, None], (2, 3, 6))], axis=1),
    "vocabulary-remapped": lambda ids: _E[_PERM][jnp.asarray(np.argsort(_PERM))[ids]],
    "index-vector-with-a-constant": lambda ids: jnp.stack([_E, -_E], axis=1)[ids, 0],
    "one-hot-einsum": lambda ids: jnp.einsum("vd,bsv->bsd", _E, jax.nn.one_hot(ids, VOCAB)),
}


@pytest.mark.parametrize("name", list(_LOOKUPS))
def test_lookups_of_moved_ids_map_back_to_their_tokens(name):
    def fn(params, ids):
        return MODEL.apply(params, _LOOKUPS[name](ids), method=TokenClassifier.from_embeddings)

    np.testing.assert_allclose(fn(VARIABLES, IDS), MODEL.apply(VARIABLES, IDS), **TOL)
    direct = jaxlrp.explain(MODEL.apply, VARIABLES, IDS, target=TARGET, composite=LRP0)
    relevance = jaxlrp.explain(fn, VARIABLES, IDS, target=TARGET, composite=LRP0)
    np.testing.assert_allclose(relevance, direct, **TOL)
    kept = jaxlrp.explain(fn, VARIABLES, IDS, target=TARGET, composite=LRP0, keep_features=True)
    assert kept.shape == (*IDS.shape, DIM)
    np.testing.assert_allclose(kept.sum(-1), direct, **TOL)


def test_a_constant_token_added_by_the_function_gets_no_relevance():
    """A [CLS] id prepended inside the function is no token of the input: its lookup's
    relevance is not given to any input token (it is absorbed, like a bias)."""

    def with_cls(params, ids):
        e = _E[jnp.concatenate([jnp.zeros((ids.shape[0], 1), ids.dtype), ids], axis=1)]
        return MODEL.apply(params, e, method=TokenClassifier.from_embeddings)

    relevance = jaxlrp.explain(with_cls, VARIABLES, IDS, target=TARGET, composite=LRP0)
    e = jnp.concatenate([jnp.broadcast_to(_E[0], (2, 1, DIM)), _E[IDS]], axis=1)
    expected = reference(e).sum(-1)  # per position, [CLS] first
    np.testing.assert_allclose(relevance, expected[:, 1:], **TOL)


def test_several_lookups_of_the_same_ids_add_up():
    rng = np.random.default_rng(1)
    second = jnp.asarray(rng.normal(size=(VOCAB, DIM)), jnp.float32)

    def two_tables(params, ids):
        e = jnp.take(params["params"]["embed"]["embedding"], ids, axis=0) + second[ids]
        return MODEL.apply(params, e, method=TokenClassifier.from_embeddings)

    relevance = jaxlrp.explain(two_tables, VARIABLES, IDS, target=TARGET, composite=LRP0)
    e1, e2 = jnp.asarray(TABLE[np.asarray(IDS)]), second[IDS]
    g = jax.grad(lambda e: logit(from_embeddings, e))(e1 + e2)  # LRP-0 splits the sum as x / z
    np.testing.assert_allclose(relevance, np.asarray((e1 * g).sum(-1) + (e2 * g).sum(-1)), **TOL)


def test_padding_masked_by_the_ids_gets_no_relevance_and_the_mask_is_not_explained():
    def masked_mean(params, ids):
        e = MODEL.apply(params, ids, method=lambda m, i: m.embed(i))
        h = nn.relu(MODEL.apply(params, e, method=lambda m, x: m.hidden(x)))
        mask = (ids != 0).astype(h.dtype)[..., None]
        pooled = jnp.sum(h * mask, axis=-2) / jnp.sum(mask, axis=-2)
        return MODEL.apply(params, pooled, method=lambda m, x: m.head(x))

    relevance = jaxlrp.explain(masked_mean, VARIABLES, IDS, target=TARGET, composite=LRP0)
    np.testing.assert_array_equal(np.asarray(relevance)[np.asarray(IDS) == 0], 0.0)
    logits = masked_mean(VARIABLES, IDS)
    np.testing.assert_allclose(relevance.sum(-1), logits[ROWS, TARGET], **TOL)


def test_a_position_embedding_indexed_by_the_ids_cumsum_is_a_constant():
    """Positions computed from the ids (RoBERTa's ``cumsum(ids != pad)``) are not a lookup of
    any one token: that embedding is a constant of the explanation, like a bias."""
    rng = np.random.default_rng(2)
    positions = jnp.asarray(rng.normal(size=(IDS.shape[1] + 1, DIM)), jnp.float32)

    def with_positions(params, ids):
        e = MODEL.apply(params, ids, method=lambda m, i: m.embed(i))
        e = e + positions[jnp.cumsum(ids != 0, axis=-1)]
        return MODEL.apply(params, e, method=TokenClassifier.from_embeddings)

    relevance = jaxlrp.explain(with_positions, VARIABLES, IDS, target=TARGET, composite=LRP0)
    e_pos = positions[jnp.cumsum(IDS != 0, axis=-1)]
    expected = reference(jnp.asarray(TABLE[np.asarray(IDS)]),
                         lambda e: from_embeddings(e + e_pos)).sum(-1)  # fmt: skip
    np.testing.assert_allclose(relevance, expected, **TOL)


# --- other frameworks ----------------------------------------------------------------------------


class EqxClassifier(eqx.Module):
    embedding: eqx.nn.Embedding
    hidden: eqx.nn.Linear
    head: eqx.nn.Linear

    def __init__(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.embedding = eqx.nn.Embedding(VOCAB, DIM, key=k1)
        self.hidden = eqx.nn.Linear(DIM, HIDDEN, use_bias=False, key=k2)
        self.head = eqx.nn.Linear(HIDDEN, CLASSES, use_bias=False, key=k3)

    def from_embeddings(self, e):  # e: (seq, DIM)
        return self.head(jnp.mean(jax.vmap(lambda v: jax.nn.relu(self.hidden(v)))(e), axis=0))

    def __call__(self, ids):  # ids: (seq,)
        return self.from_embeddings(jax.vmap(self.embedding)(ids))


def test_equinox_vmapped_embedding():
    model = EqxClassifier(jax.random.key(3))
    ids = IDS[0]
    relevance = jaxlrp.explain(lambda m, i: m(i), model, ids, target=1, composite=LRP0)
    assert relevance.shape == ids.shape
    e = model.embedding.weight[ids]
    np.testing.assert_allclose(relevance, reference(e, model.from_embeddings, 1).sum(-1), **TOL)
    kept = jaxlrp.explain(lambda m, i: m(i), model, ids, target=1, composite=LRP0,
                          keep_features=True)  # fmt: skip
    assert kept.shape == (*ids.shape, DIM)
    np.testing.assert_allclose(kept, reference(e, model.from_embeddings, 1), **TOL)


def test_equinox_embedding_of_one_scalar_id():
    model = EqxClassifier(jax.random.key(4))

    def fn(m, i):  # a scalar id: the lookup is a dynamic_slice
        return m.head(jax.nn.relu(m.hidden(m.embedding(i))))

    relevance = jaxlrp.explain(fn, model, jnp.int32(6), target=2, composite=LRP0)
    assert relevance.shape == ()
    e = model.embedding.weight[6]
    expected = reference(e, lambda e_: m_head(model, e_), 2).sum()
    np.testing.assert_allclose(relevance, expected, **TOL)


def m_head(model, e):
    return model.head(jax.nn.relu(model.hidden(e)))


def test_keras_embedding():
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "jax":
        pytest.skip(f"keras runs on {keras.backend.backend()!r}, not jax")
    ids_in = keras.Input((IDS.shape[1],), dtype="int32")
    embed = keras.layers.Embedding(VOCAB, DIM)
    hidden = keras.layers.Dense(HIDDEN, activation="relu")
    head = keras.layers.Dense(CLASSES)
    model = keras.Model(ids_in, head(keras.layers.GlobalAveragePooling1D()(hidden(embed(ids_in)))))
    trainable = [v.value for v in model.trainable_variables]

    def fn(trainable, ids):
        return model.stateless_call(trainable, [], ids)[0]

    relevance = jaxlrp.explain(fn, trainable, IDS, target=TARGET, composite=LRP0)
    np.testing.assert_allclose(relevance.sum(-1), fn(trainable, IDS)[ROWS, TARGET], **TOL)
    table = embed.embeddings.value

    def from_e(e):
        return head(jnp.mean(hidden(e), axis=1))

    np.testing.assert_allclose(relevance, reference(table[IDS], from_e).sum(-1), **TOL)


# --- arguments, transformations ------------------------------------------------------------------


def test_float_and_integer_arguments_together_return_a_tuple():
    rng = np.random.default_rng(5)
    shift = jnp.asarray(rng.normal(size=(*IDS.shape, DIM)), jnp.float32)

    def shifted(params, x, ids):  # a float input added to the looked-up vectors
        e = MODEL.apply(params, ids, method=lambda m, i: m.embed(i)) + x
        return MODEL.apply(params, e, method=TokenClassifier.from_embeddings)

    r_x, r_ids = jaxlrp.explain(shifted, VARIABLES, shift, IDS, target=TARGET, composite=LRP0,
                                argnums=(1, 2))  # fmt: skip
    assert r_x.shape == shift.shape and r_ids.shape == IDS.shape
    e = jnp.asarray(TABLE[np.asarray(IDS)])
    g = jax.grad(lambda z: logit(from_embeddings, z))(e + shift)  # LRP-0 splits e + x as x / z
    np.testing.assert_allclose(r_x, np.asarray(shift * g), **TOL)
    np.testing.assert_allclose(r_ids, np.asarray((e * g).sum(-1)), **TOL)


def test_integer_leaves_of_a_pytree_argument():
    def fn(params, inputs):
        return MODEL.apply(params, inputs["ids"])

    relevance = jaxlrp.explain(fn, VARIABLES, {"ids": IDS}, target=TARGET, composite=LRP0)
    direct = jaxlrp.explain(MODEL.apply, VARIABLES, IDS, target=TARGET, composite=LRP0)
    np.testing.assert_allclose(relevance["ids"], direct, **TOL)


def test_jit_equals_eager_and_vmap_equals_the_batch():
    eager = jaxlrp.explain(MODEL.apply, VARIABLES, IDS, target=TARGET, composite=LRP0)
    jitted = jax.jit(lambda v, i, t: jaxlrp.explain(MODEL.apply, v, i, target=t, composite=LRP0))
    np.testing.assert_allclose(jitted(VARIABLES, IDS, TARGET), eager, **TOL)
    per_example = jax.vmap(
        lambda i, t: jaxlrp.explain(MODEL.apply, VARIABLES, i, target=t, composite=LRP0)
    )(IDS, TARGET)
    np.testing.assert_allclose(per_example, eager, **TOL)
    kept = jax.jit(lambda i: jaxlrp.explain(MODEL.apply, VARIABLES, i, target=TARGET,
                                            composite=LRP0, keep_features=True))(IDS)  # fmt: skip
    np.testing.assert_allclose(kept.sum(-1), eager, **TOL)


def test_gradient_at_the_lookup_with_times_input_false():
    """With ``composites.Gradient()`` and ``times_input=False`` the pull-back is the gradient
    at the looked-up vectors (per feature with ``keep_features``)."""
    out, relevance_fn = jaxlrp.lrp(MODEL.apply, composites.Gradient(), times_input=False,
                                   keep_features=True)(VARIABLES, IDS)  # fmt: skip
    onehot = jax.nn.one_hot(TARGET, CLASSES)
    gradient = relevance_fn(out * onehot, cotangent=onehot)
    e = jnp.asarray(TABLE[np.asarray(IDS)])
    np.testing.assert_allclose(gradient, jax.grad(lambda e_: logit(from_embeddings, e_))(e), **TOL)


def test_lrp_pullback_on_token_ids():
    out, relevance_fn = jaxlrp.lrp(MODEL.apply, LRP0)(VARIABLES, IDS)
    onehot = jax.nn.one_hot(TARGET, CLASSES)
    relevance = relevance_fn(out * onehot)
    expected = jaxlrp.explain(MODEL.apply, VARIABLES, IDS, target=TARGET, composite=LRP0)
    np.testing.assert_allclose(relevance, expected, **TOL)


# --- boolean inputs ------------------------------------------------------------------------------


def test_a_boolean_multi_hot_input_is_explained_like_its_float_version():
    """Boolean inputs are treated like integer ones: a multi-hot vector fed to a dense layer is
    explained at its 0/1 value, as if the 0/1 floats had been given."""
    rng = np.random.default_rng(6)
    w1 = jnp.asarray(rng.normal(size=(VOCAB, HIDDEN)), jnp.float32)
    w2 = jnp.asarray(rng.normal(size=(HIDDEN, CLASSES)), jnp.float32)
    words = jnp.asarray(rng.uniform(size=(4, VOCAB)) < 0.4)

    def bag_of_words(x):
        return jax.nn.relu(x.astype(jnp.float32) @ w1) @ w2

    relevance = jaxlrp.explain(bag_of_words, words, target=1, composite=LRP0)
    floats = jaxlrp.explain(bag_of_words, words.astype(jnp.float32), target=1, composite=LRP0)
    assert relevance.shape == words.shape
    np.testing.assert_allclose(relevance, floats, **TOL)


# --- errors --------------------------------------------------------------------------------------


def _mlp(params, x):
    return jax.nn.relu(x @ params[0]) @ params[1]


MLP = (jnp.ones((DIM, HIDDEN)), jnp.ones((HIDDEN, CLASSES)))
X = jnp.ones((*IDS.shape, DIM))


@pytest.mark.parametrize(
    "fn, args, message",
    [
        (lambda p, x, ids: _mlp(p, x).sum(1), (MLP, X, IDS),
         r"argument 2 \(path '2'\) has dtype int32 and reaches no lookup: none of its values"),
        (lambda p, x, ids: _mlp(p, jnp.where((ids != 0)[..., None], x, 0.0)).sum(1),
         (MLP, X, IDS), r"argument 2 .* reaches no lookup: .*select_n"),
        (lambda p, x, ids: _mlp(p, ids[..., None].astype(jnp.float32) * x).sum(1),
         (MLP, X, IDS), r"argument 2 .*used as a number"),
        (lambda p, x, mask: _mlp(p, jnp.where(mask[..., None], x, 0.0)).sum(1),
         (MLP, X, IDS > 3), r"argument 2 .* has dtype bool and reaches no lookup"),
        (lambda p, x, ids: _mlp(p, jax.lax.scan(lambda c, i: (c + _E[i], None),
                                                jnp.zeros((2, DIM)), ids.T)[0]),
         (MLP, X, IDS), r"argument 2 .*lookups inside scan/cond bodies are not supported"),
    ],
    ids=["ids-unused", "ids-only-as-a-mask", "ids-as-numbers", "bool-only-as-a-mask",
         "lookup-inside-a-scan"],
)  # fmt: skip
def test_integer_inputs_without_a_lookup_raise_a_value_error_naming_them(fn, args, message):
    with pytest.raises(ValueError, match=message):
        jaxlrp.explain(fn, *args, target=0, argnums=2)
    with pytest.raises(ValueError, match=message):  # not a raw JAX error under jit either
        jax.jit(lambda *a: jaxlrp.explain(fn, *a, target=0, argnums=2))(*args)


def test_a_lookup_into_an_explained_table_is_not_a_token_lookup():
    def fn(table, ids):
        return jnp.mean(jnp.take(table, ids, axis=0), axis=1)

    with pytest.raises(ValueError, match="its table depends on an explained input"):
        jaxlrp.explain(fn, jnp.ones((VOCAB, CLASSES)), IDS, target=0, argnums=(0, 1))


def test_keep_features_refuses_lookups_with_different_feature_shapes():
    narrow, wide = TABLE[:, :2], TABLE[:, 2:]

    def two_widths(params, ids):  # two lookups of the ids, 2 and DIM - 2 features wide
        e = jnp.concatenate([jnp.asarray(narrow)[ids], jax.nn.one_hot(ids, VOCAB) @ wide], -1)
        return MODEL.apply(params, e, method=TokenClassifier.from_embeddings)

    summed = jaxlrp.explain(two_widths, VARIABLES, IDS, target=TARGET, composite=LRP0)
    direct = jaxlrp.explain(MODEL.apply, VARIABLES, IDS, target=TARGET, composite=LRP0)
    np.testing.assert_allclose(summed, direct, **TOL)
    with pytest.raises(ValueError, match="same feature shape"):
        jaxlrp.explain(two_widths, VARIABLES, IDS, target=TARGET, composite=LRP0,
                       keep_features=True)  # fmt: skip


# --- inspection ----------------------------------------------------------------------------------


def test_layers_and_rule_table_list_the_layers_after_the_lookup():
    found = jaxlrp.layers(MODEL.apply, VARIABLES, IDS)
    assert [layer.path for layer in found] == ["hidden", "head"]
    assert found[0].is_first and found[0].input_shape == (*IDS.shape, DIM)
    table = jaxlrp.rule_table(MODEL.apply, VARIABLES, IDS, composite=LRP0)
    assert "hidden (first)" in table and "head (last)" in table
    nodes = jaxlrp.rule_table(MODEL.apply, VARIABLES, IDS, composite=LRP0, nodes=True)
    assert "dot_general" in nodes and "gather" not in nodes  # the lookup is the input


def test_ledger_accounts_for_the_relevance_of_token_ids():
    book = jaxlrp.ledger(MODEL.apply, VARIABLES, IDS, target=TARGET, composite=LRP0)
    logits = MODEL.apply(VARIABLES, IDS)
    np.testing.assert_allclose(book.output_relevance, float(logits[ROWS, TARGET].sum()), rtol=1e-6)
    np.testing.assert_allclose(book.input_relevance, book.output_relevance, rtol=1e-5)
    assert book.absorbing(1e-4) == []
