"""``python -m cxrcurate.cli`` (used by ``torchrun``) runs the ``cxrcurate`` command."""

import sys

from . import main

sys.exit(main())
