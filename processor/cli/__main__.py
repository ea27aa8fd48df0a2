"""``python -m processor.cli``: the ``axmon`` command."""

import sys

from processor.cli.app import main

sys.exit(main())
