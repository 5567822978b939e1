"""Google Cloud adapters of the ports: they only do I/O and translate errors.

Each adapter takes an injected client or builds one lazily on first use (never at import time),
so the official clients honour the emulator variables (``STORAGE_EMULATOR_HOST``,
``PUBSUB_EMULATOR_HOST``, ``FIRESTORE_EMULATOR_HOST``) locally and real credentials in production.
"""

from distillery.adapters.firestore import FirestoreRecordStore
from distillery.adapters.gcs import GcsObjectStore
from distillery.adapters.pubsub import PubsubPublisher

__all__ = ["FirestoreRecordStore", "GcsObjectStore", "PubsubPublisher"]
