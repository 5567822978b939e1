"""``python -m distillery.commands`` runs the command line (as the ``distillery`` command does)."""

import sys

from distillery.commands.cli import main

sys.exit(main())
