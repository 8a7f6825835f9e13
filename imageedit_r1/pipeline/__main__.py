"""``python -m imageedit_r1.pipeline``: see ``imageedit_r1.pipeline.cli``."""

import sys

from imageedit_r1.pipeline.cli import main

sys.exit(main())
