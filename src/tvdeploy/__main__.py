"""``python -m tvdeploy``."""

import sys

from tvdeploy.cli import main

sys.exit(main())
