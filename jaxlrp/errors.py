"""Errors raised by jaxlrp (all subclass ``ValueError`` so that callers can catch them broadly)."""


class UnsupportedPrimitiveError(ValueError):
    """A primitive on the relevance path has no entry in :data:`jaxlrp.primitives.PRIMITIVES`.

    The message names the primitive, its operand and result shapes, and the Flax module (name
    stack) it came from.
    """


class RuleError(ValueError):
    """A rule's backward pass returned relevance that does not fit the node it explains.

    The message names the rule, the primitive, the operand and output shapes, and the Flax module
    (name stack) the node came from.
    """


class UsageError(ValueError, TypeError):
    """A call of :func:`jaxlrp.explain` or :func:`jaxlrp.lrp` that cannot mean what it says: a
    composite given as a string that names no preset, a linen module instead of its ``apply``, a
    function returning a tuple, swapped arguments, raw pixels, ...

    The message names what is wrong and how to fix it. Subclasses both ``ValueError`` and
    ``TypeError``, so ``except`` clauses written for either keep catching it (see
    :mod:`jaxlrp.validation`).
    """


class UsageWarning(UserWarning):
    """A call that runs but probably does not explain what was meant: a model in training mode
    (active dropout, batch statistics from the batch) or a ``(batch,)`` output read as
    ``(classes,)``. Silence one with :func:`warnings.filterwarnings` (or as the message says)."""
