"""The ``distillery`` command line: the operator's commands, never deployed.

:mod:`~distillery.commands.cli` builds the parser; ``python -m distillery.commands`` runs it.
"""
