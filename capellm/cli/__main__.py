"""`python -m capellm.cli ...` (what `accelerate launch -m capellm.cli train ...` runs)."""

import sys

from capellm.cli import main

sys.exit(main())
