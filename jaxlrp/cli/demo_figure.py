"""``jaxlrp demo``: the README figure."""

from __future__ import annotations

import argparse

from jaxlrp.cli.names import _check_names


def _cmd_demo(args: argparse.Namespace) -> int:
    """Explain scikit-image's chelsea, coffee and astronaut with EfficientNet-Lite0 under
    EpsilonGammaBox and write image | heatmap | overlay rows with the predicted classes
    (:func:`jaxlrp.demo.run_demo`).

    Needs the demo extra::

        pip install "jaxlrp[demo]"
    """
    from jaxlrp import demo

    key = _check_names(args.model, args.composite)
    demo.run_demo(args.output, model=args.model, composite=key)
    return 0
