"""jaxlrp: Layer-wise Relevance Propagation for JAX and Flax.

jaxlrp traces a model to a jaxpr and re-evaluates it with an interpreter in which every layer,
activation, sum and product is wrapped in a ``jax.custom_vjp`` whose backward pass is an LRP
rule chosen by a *composite*. The explanation is an ordinary JAX function: it composes with
``jax.jit`` and ``jax.vmap`` and runs on CPU, GPU and TPU.

Quick start::

    import jaxlrp
    from jaxlrp import composites, rules

    R = jaxlrp.explain(model.apply, variables, x, target=3,
                       composite=composites.EpsilonGammaBox(low=0.0, high=1.0))
    jaxlrp.print_rules(model.apply, variables, x, composite=composites.EpsilonGammaBox(0., 1.))

Public API:
  :func:`explain`, :func:`lrp`, :func:`output_relevance`, :func:`layers`, :func:`rule_table`,
  :func:`print_rules`, :func:`ledger` (relevance in and out of every layer and node);
  :func:`bilrp`, :func:`similarity_relevance`, :func:`embedding_relevance` (explaining the
  similarity of two inputs' embeddings: BiLRP token-pair relevance and first order);
  :func:`explain_continuation` (every generated token of a causal LM, one compiled call); the
  modules :mod:`jaxlrp.rules` and :mod:`jaxlrp.composites`; :mod:`jaxlrp.neuralize` (NEON:
  k-means and kernel outlier models as networks, explained);
  :class:`Composite`, :class:`LayerInfo` (what a composite sees of a layer),
  :class:`NodeInfo` and :class:`NodeKind` (what a node rule sees),
  :class:`UnsupportedPrimitiveError`, :class:`RuleError`.

References:
  Montavon, Binder, Lapuschkin, Samek, Müller, "Layer-Wise Relevance Propagation: An Overview",
  in Explainable AI, LNCS 11700, Springer, 2019.
"""

from jaxlrp import composites, neuralize, rules
from jaxlrp.compilation_cache import enable_compilation_cache
from jaxlrp.composites import Composite
from jaxlrp.dataset import DatasetExplanation, explain_dataset, load_explanations
from jaxlrp.errors import RuleError, UnsupportedPrimitiveError, UsageError, UsageWarning
from jaxlrp.explain import explain, lrp, output_relevance
from jaxlrp.generation import ContinuationExplanation, explain_continuation
from jaxlrp.ledger import Ledger, LedgerEntry, ledger
from jaxlrp.plan import LayerInfo, NodeInfo, NodeKind
from jaxlrp.record import Recorded, recordable
from jaxlrp.rule_plan import layers, print_rules, rule_table
from jaxlrp.similarity import bilrp, embedding_relevance, similarity_relevance

__version__ = "0.1.0"

__all__ = [
    "Composite",
    "ContinuationExplanation",
    "DatasetExplanation",
    "LayerInfo",
    "Ledger",
    "LedgerEntry",
    "NodeInfo",
    "NodeKind",
    "Recorded",
    "RuleError",
    "UnsupportedPrimitiveError",
    "UsageError",
    "UsageWarning",
    "bilrp",
    "composites",
    "embedding_relevance",
    "enable_compilation_cache",
    "explain",
    "explain_continuation",
    "explain_dataset",
    "layers",
    "ledger",
    "neuralize",
    "load_explanations",
    "lrp",
    "output_relevance",
    "print_rules",
    "recordable",
    "rule_table",
    "rules",
    "similarity_relevance",
]
