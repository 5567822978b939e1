"""``python -m distillery.local.stack.preflight``: can the local stack run here?

Checks for Java, the Pub/Sub and Firestore emulators and fake-gcs-server before a test run, so a
missing tool fails in one clear message instead of in every integration test. Exit 0 when all are
found, 3 otherwise.
"""

from __future__ import annotations

import sys

from distillery.local.stack.errors import MissingToolError
from distillery.local.stack.tools import find_tools


def main() -> int:
    """Report the tools found (or what is missing); returns the exit code."""
    try:
        tools = find_tools()
    except MissingToolError as exc:
        print(f"preflight: {exc}", file=sys.stderr)
        return 3
    print(f"preflight: java {tools.java}", file=sys.stderr)
    print(f"preflight: pubsub emulator {tools.pubsub_jar}", file=sys.stderr)
    print(f"preflight: firestore emulator {tools.firestore_jar}", file=sys.stderr)
    print(f"preflight: fake-gcs-server {tools.fake_gcs_server}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
