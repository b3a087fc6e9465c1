"""``python -m lib.audit``: the same as the ``ddcs-audit`` command."""
import sys

from .cli import main

sys.exit(main())
