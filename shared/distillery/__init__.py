"""Distillery: continuous model distillation on Google Cloud.

The library behind the Cloud Functions (``functions/``), the ``distillery`` command and the local
emulator stack. Everything here is importable without the local tooling's heavy dependencies.
"""

__version__ = "0.1.0"
