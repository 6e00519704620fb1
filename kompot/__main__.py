"""``python -m kompot …`` is the same as the ``kompot`` command."""

import sys

from .cli import main

sys.exit(main())
