"""``python -m fcgrad ...`` is the ``fcgrad`` command."""

import sys

from fcgrad.cli.main import main

sys.exit(main())
