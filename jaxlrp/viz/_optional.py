"""Lazy imports of the optional plotting dependencies, with an actionable error."""

from __future__ import annotations

import importlib
from types import ModuleType

_INSTALL_HINT = 'install the visualization extra: pip install "jaxlrp[viz]"'


def require(module: str, purpose: str) -> ModuleType:
    """Import an optional module, or fail with a message saying which extra provides it.

    Args:
      module: dotted module name, e.g. ``"matplotlib.figure"`` or ``"PIL.Image"``.
      purpose: what the caller needs it for, used in the error message.

    Returns:
      The imported module.

    Raises:
      ImportError: if the module is not installed; the message names the ``viz`` extra.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        message = f"{purpose} needs `{top}`, which is not installed; {_INSTALL_HINT}"
        raise ImportError(message) from err
