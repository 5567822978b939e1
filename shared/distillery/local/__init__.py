"""Everything local, never deployed: the local stack, the Vertex AI emulator, its trainer, the demo.

``scripts/package`` leaves this subpackage (and :mod:`distillery.commands`) out of the functions'
archive; its dependencies (torch, transformers, fake-gcs-server) are the ``local`` extra.
"""
