"""``python -m jaxlrp``: the ``jaxlrp`` command line (see :mod:`jaxlrp.cli`)."""

import sys

from jaxlrp.cli import main

sys.exit(main())
