"""`python -m dgen ...` is the `dgen` command."""

import sys

from .cli import main

sys.exit(main())
