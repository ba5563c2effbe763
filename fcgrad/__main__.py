"""``python -m fcgrad ...`` is the ``fcgrad`` command."""

import sys

from crosscheck.cli import main

sys.exit(main())
