"""``python -m distillery`` runs the command line."""

import sys

from distillery.cli import main

sys.exit(main())
