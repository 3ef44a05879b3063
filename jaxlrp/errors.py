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
