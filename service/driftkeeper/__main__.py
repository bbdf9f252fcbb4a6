"""``python -m driftkeeper``: what ``serve`` starts its monitor with (this interpreter)."""

import sys

from .cli import main

sys.exit(main())
