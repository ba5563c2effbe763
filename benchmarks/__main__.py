import sys

from fcgrad.benchmarks.cli import main

sys.exit(main())
