"""``python -m processor.cli``: the ``axmon`` command."""

import sys

from processor.cli.app import main

if __name__ == "__main__":  # not when a spawned process (a replay's fold process) imports it as __mp_main__
    sys.exit(main())
