"""`python -m avdis ...`: the `avdis` command, for an environment whose scripts folder is not on PATH."""

import sys

from avdis.cli import main

sys.exit(main())
