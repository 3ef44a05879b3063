"""``python -m jaxlrp.cli``: the same as ``jaxlrp`` and ``python -m jaxlrp``."""

import sys

from jaxlrp.cli import main

sys.exit(main())
