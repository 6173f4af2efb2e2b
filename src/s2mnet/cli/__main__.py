"""``python -m s2mnet.cli`` (e.g. under ``torchrun``) runs the ``s2m`` command line."""

import sys

from s2mnet.cli import main

sys.exit(main())
