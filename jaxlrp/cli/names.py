"""Checking the model and composite names given with ``--model`` and ``--composite``."""

from __future__ import annotations

from jaxlrp.cli.errors import CLIError


def _check_names(model: str, composite: str) -> str:
    """Validate the model and composite names; returns the composite's preset key."""
    from jaxlrp import composites, demo, models

    if model.strip().lower().replace("-", "_") not in models.available_models("image"):
        valid = ", ".join(m.replace("_", "-") for m in models.available_models("image"))
        raise CLIError(f"unknown model {model!r}; valid models: {valid}")
    key = composites.canonical_name(composite)
    if key not in demo.composite_names():
        raise CLIError(
            f"unknown composite {composite!r}; valid composites: "
            f"{', '.join(demo.composite_names())} (see \"jaxlrp composites\")"
        )
    return key
