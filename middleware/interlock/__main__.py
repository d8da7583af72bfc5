"""``python -m interlock``: the ``interlock`` command."""

import sys

from interlock.cli import main

sys.exit(main())
