"""How the stack runs each service: the facts of LOCAL_STACK.md, one definition per service."""

from __future__ import annotations

import sys
from pathlib import Path

from distillery.local.stack import _services
from distillery.local.stack.routes import MessagePublished, Route, Scheduled
from distillery.local.stack.tools import Tools

TOOLS = Tools(
    java=Path("/jdk/bin/java"),
    pubsub_jar=Path("/sdk/pubsub-emulator/lib/cloud-pubsub-emulator-0.8.20-all.jar"),
    firestore_jar=Path("/sdk/cloud-firestore-emulator/cloud-firestore-emulator.jar"),
    fake_gcs_server=Path("/wrapper/bin/fake-gcs-server"),
)
ENV = {"PATH": "/usr/bin"}


def _after(argv: tuple[str, ...], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_services_emulators_run_their_jars_directly_with_a_capped_heap() -> None:
    pubsub = _services.pubsub_emulator(TOOLS, 8085, jvm_heap="256m", env=ENV)
    firestore = _services.firestore_emulator(TOOLS, 8086, jvm_heap="256m", env=ENV)
    for command in (pubsub, firestore):
        # The JVM itself, never the gcloud wrapper (stopping the wrapper orphans the JVM).
        assert command.argv[:2] == ("/jdk/bin/java", "-Xmx256m")
        assert "--host=127.0.0.1" in command.argv
        assert (command.probe_path, command.ready_statuses) == ("/", (200,))
        assert command.env == ENV
    assert _after(pubsub.argv, "-jar") == str(TOOLS.pubsub_jar)
    assert "--port=8085" in pubsub.argv
    assert _after(firestore.argv, "-cp") == str(TOOLS.firestore_jar)
    assert firestore.argv[-4:] == (
        "start",
        "--host=127.0.0.1",
        "--port=8086",
        "--database-mode=firestore-native",
    )


def test_services_fake_gcs_publishes_finalizations_through_its_own_environment() -> None:
    command = _services.fake_gcs_server(
        TOOLS,
        4443,
        project="p",
        notifications_topic="notes",
        pubsub_host="127.0.0.1:8085",
        env=ENV,
    )
    assert command.argv[0] == str(TOOLS.fake_gcs_server)
    assert _after(command.argv, "-port") == "4443"
    assert _after(command.argv, "-backend") == "memory"
    assert _after(command.argv, "-external-url") == "http://127.0.0.1:4443"
    assert _after(command.argv, "-event.pubsub-project-id") == "p"
    assert _after(command.argv, "-event.pubsub-topic") == "notes"
    assert _after(command.argv, "-event.list") == "finalize"
    # fake-gcs finds the Pub/Sub emulator only through its own environment.
    assert command.env == {**ENV, "PUBSUB_EMULATOR_HOST": "127.0.0.1:8085"}
    assert ENV == {"PATH": "/usr/bin"}  # the caller's mapping is left alone
    assert (command.probe_path, command.ready_statuses) == ("/storage/v1/b", (200,))


def test_services_vertex_api_options(tmp_path: Path) -> None:
    default = _services.vertex_api(
        8090,
        data_dir=tmp_path,
        max_concurrent_jobs=2,
        trainer=True,
        worker_threads=0,
        env=ENV,
    )
    assert default.argv[:3] == (sys.executable, "-m", "distillery.local.emulator")
    assert _after(default.argv, "--port") == "8090"
    assert _after(default.argv, "--max-concurrent-jobs") == "2"
    assert _after(default.argv, "--data-dir") == str(tmp_path)
    assert "--no-trainer" not in default.argv and "--worker-threads" not in default.argv
    assert default.env == {**ENV, "PYTHONUNBUFFERED": "1"}
    lean = _services.vertex_api(
        8090,
        data_dir=tmp_path,
        max_concurrent_jobs=1,
        trainer=False,
        worker_threads=1,
        env=ENV,
    )
    assert "--no-trainer" in lean.argv
    assert _after(lean.argv, "--worker-threads") == "1"


def test_services_functions_answer_the_probe_with_405_from_their_source_folder(
    tmp_path: Path,
) -> None:
    source = tmp_path / "functions" / "main.py"
    event = _services.function(
        Route("launch_job", MessagePublished(topic="t")), 8101, source=source, env=ENV
    )
    scheduled = _services.function(
        Route("reconcile", Scheduled(every_seconds=30)), 8102, source=source, env=ENV
    )
    assert event.argv[:3] == (sys.executable, "-m", "functions_framework")
    assert _after(event.argv, "--target") == "launch_job"
    assert _after(event.argv, "--source") == str(source)
    assert _after(event.argv, "--port") == "8101"
    assert _after(event.argv, "--signature-type") == "cloudevent"
    assert _after(scheduled.argv, "--signature-type") == "http"
    for command in (event, scheduled):
        assert (command.probe_path, command.ready_statuses) == ("/", (405,))
        assert command.cwd == source.parent
        assert command.env["PYTHONUNBUFFERED"] == "1"


def test_services_bridge_reads_its_config_file(tmp_path: Path) -> None:
    command = _services.bridge(tmp_path / "bridge.json", env=ENV)
    assert command.argv == (
        sys.executable,
        "-m",
        "distillery.local.stack.bridge",
        "--config",
        str(tmp_path / "bridge.json"),
    )
    assert (command.probe_path, command.ready_statuses) == ("/healthz", (200,))
