"""``python -m edgec``: the same as the ``edgec`` command."""

import sys

from edgec.cli import main

sys.exit(main())
