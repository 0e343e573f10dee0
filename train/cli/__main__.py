"""`python -m train.cli ...` is `cgpt ...` (what torchrun and the tests launch)."""

import sys

from train.cli import main

sys.exit(main())
