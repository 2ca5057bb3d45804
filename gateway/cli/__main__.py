"""`python -m gateway.cli`: the `hookgate` command."""

import sys

from gateway.cli import main

sys.exit(main())
