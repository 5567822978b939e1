"""``distillery dev up | status | env | down`` end to end, in subprocesses, on free ports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import BatchPredictionJob, JobServiceClient

from distillery.facts import GEMINI_BATCH_PREDICTIONS_FILE
from distillery.labeling import LINE_LABEL_KEY, STEP_BY_STEP_INSTRUCTION, judge_output
from distillery.local.emulator._config import LOCAL_TEACHERS_VARIABLE
from distillery.local.example_data import CLASSES, generate
from distillery.local.stack._clients import storage_client
from distillery.local.stack.control import DEFAULT_BUCKET
from distillery.local.stack.processes import free_port, free_port_run
from distillery.local.stack.routes import ROUTES
from distillery.local.teachers import STACK_TEACHER_MODELS, LocalTeacher
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


def _dev(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "distillery.commands", "dev", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def _free_ports() -> dict[str, int]:
    """A free port for each service; the functions listen on consecutive ports from
    --functions-port: all of them must be free (a single free port may be followed by one an
    outgoing connection holds)."""
    functions = free_port_run(len(ROUTES))
    taken = range(functions, functions + len(ROUTES))
    ports = {"functions": functions}
    for name in ("pubsub", "firestore", "gcs", "bridge", "vertex"):
        while (port := free_port()) in taken or port in ports.values():
            pass
        ports[name] = port
    return ports


def _shell_env() -> dict[str, str]:
    """This process's environment without what an earlier stack of the session may have
    exported (the shell's DISTILLERY_BACKEND, poll interval and local teachers are the stack's)."""
    exported = ("DISTILLERY_BACKEND", "DISTILLERY_DEV_POLL_TUNING_JOBS_SECONDS")
    return {k: v for k, v in os.environ.items() if k not in (*exported, LOCAL_TEACHERS_VARIABLE)}


def test_localstack_cli_up_status_env_down(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ports = _free_ports()
    options = [f"--{name}-port={port}" for name, port in ports.items()]
    shell_env = _shell_env()  # so the default backend
    bad = _dev(
        "up",
        "--state-dir",
        str(state),
        *options,
        env={**shell_env, "DISTILLERY_DEV_POLL_TUNING_JOBS_SECONDS": "soon"},
    )
    assert bad.returncode == 2, bad.stderr + bad.stdout
    assert "DISTILLERY_DEV_POLL_TUNING_JOBS_SECONDS must be a whole number" in bad.stderr
    # Without a local teacher (test_dev_up_provides_a_local_teacher starts one with it).
    up = _dev(
        "up", "--state-dir", str(state), *options, "--project", "cli-test", "--no-teacher",
        env=shell_env,
    )  # fmt: skip
    recorded: list[int] = []
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        assert "local stack up, backend gemini, tuning jobs polled every 60 s" in up.stdout
        assert "no local teacher (--no-teacher): batch prediction jobs" in up.stdout
        assert not (state / "teachers").exists()
        assert f"export PUBSUB_EMULATOR_HOST=127.0.0.1:{ports['pubsub']}" in up.stdout
        services = json.loads((state / "stack.json").read_text())["services"]
        recorded = [record["pid"] for record in services.values()]
        # The emulators, fake-gcs, the bridge, the Vertex AI emulator and one process a function.
        assert len(recorded) == 5 + len(ROUTES)
        family = {pid for pid in recorded} | {
            child.pid for pid in recorded for child in psutil.Process(pid).children(recursive=True)
        }

        again = _dev("up", "--state-dir", str(state), *options)
        assert again.returncode == 3
        assert "already running" in again.stderr and "dev down" in again.stderr

        status = _dev("status", "--state-dir", str(state))
        assert status.returncode == 0, status.stderr
        assert status.stdout.count(" up ") == len(recorded) and "DOWN" not in status.stdout

        env = _dev("env", "--state-dir", str(state))
        assert env.returncode == 0, env.stderr
        script = f'eval "{env.stdout}"; echo "$GOOGLE_CLOUD_PROJECT $STORAGE_EMULATOR_HOST"'
        shell = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
        assert shell.stdout.split() == ["cli-test", f"http://127.0.0.1:{ports['gcs']}"]
        names = [line.split("=")[0].removeprefix("export ") for line in env.stdout.splitlines()]
        assert set(names) == {
            "GOOGLE_CLOUD_PROJECT",
            "DISTILLERY_BUCKET",
            "DISTILLERY_REGION",
            "STORAGE_EMULATOR_HOST",
            "PUBSUB_EMULATOR_HOST",
            "FIRESTORE_EMULATOR_HOST",
            "DISTILLERY_VERTEX_API_ENDPOINT",
            "DISTILLERY_BACKEND",
        }
        assert "export DISTILLERY_BACKEND=gemini" in env.stdout

        down = _dev("down", "--state-dir", str(state))
        assert down.returncode == 0, down.stderr
        left = [pid for pid in family if psutil.pid_exists(pid) and _alive(pid)]
        assert left == [], f"processes left behind: {left}"
        assert not (state / "stack.json").exists()

        assert _dev("status", "--state-dir", str(state)).returncode == 3
        after = _dev("env", "--state-dir", str(state))
        assert after.returncode == 3 and "no local stack is running" in after.stderr

        # Up again at once on the same ports: what the stopped stack's connections left in
        # TIME_WAIT does not count as "in use".
        # This time with the pipeline backend and a short poll exported in the shell.
        exported = {
            **shell_env,
            "DISTILLERY_BACKEND": "pipeline",
            "DISTILLERY_DEV_POLL_TUNING_JOBS_SECONDS": "3",
        }
        reup = _dev(
            "up", "--state-dir", str(state), *options, "--project", "cli-test", "--no-teacher",
            env=exported,
        )  # fmt: skip
        assert reup.returncode == 0, reup.stderr + reup.stdout
        assert "local stack up, backend pipeline, tuning jobs polled every 3 s" in reup.stdout
        assert "export DISTILLERY_BACKEND=pipeline" in reup.stdout
        bridge = json.loads((state / "bridge.json").read_text())
        assert {s["target"]: s["every_seconds"] for s in bridge["schedules"]} == {
            "reconcile": 30,
            "poll_tuning_jobs": 3,
        }
        assert f"export PUBSUB_EMULATOR_HOST=127.0.0.1:{ports['pubsub']}" in reup.stdout
        assert _dev("down", "--state-dir", str(state)).returncode == 0
    finally:
        if recorded:  # a failed assertion must not leave the stack running
            _dev("down", "--state-dir", str(state))


@pytest.mark.timeout(600)
def test_dev_up_provides_a_local_teacher(
    tmp_path: Path, teacher_cache: Path, local_teacher: LocalTeacher
) -> None:
    """``up`` hands the cached local teacher to the local Vertex AI API for every teacher model:
    a batch prediction job of ``gemini-2.5-flash`` (not the id it was trained for) is answered
    with a rationale, then the answer, in the form the labeling stage parses."""
    state = tmp_path / "state"
    ports = _free_ports()
    options = [f"--{name}-port={port}" for name, port in ports.items()]
    shell_env = _shell_env()
    up = _dev(
        "up", "--state-dir", str(state), *options, "--project", "cli-teacher",
        "--teacher-cache", str(teacher_cache), env=shell_env,
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        assert "training the local teacher" not in up.stdout  # the cache has it
        assert f"local teacher {local_teacher.model_dir} (held out: labels" in up.stdout
        assert f"answers batch prediction for {', '.join(STACK_TEACHER_MODELS)}" in up.stdout

        prompt = generate(1, 1, seed=23, labeled=False)[0][0].input_text
        request = {
            "request": {
                "contents": [{"role": "user", "parts": [{"text": prompt}]}],
                "systemInstruction": {"parts": [{"text": STEP_BY_STEP_INSTRUCTION}]},
                "labels": {LINE_LABEL_KEY: "1"},
            }
        }
        storage = storage_client(f"http://127.0.0.1:{ports['gcs']}", "cli-teacher")
        bucket = storage.bucket(DEFAULT_BUCKET)
        bucket.blob("teacher/requests.jsonl").upload_from_string(json.dumps(request) + "\n")
        client = JobServiceClient(
            transport="rest",
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": f"http://127.0.0.1:{ports['vertex']}"},
        )
        body = {
            "displayName": "cli-teacher",
            "model": "publishers/google/models/gemini-2.5-flash",
            "inputConfig": {
                "instancesFormat": "jsonl",
                "gcsSource": {"uris": [f"gs://{DEFAULT_BUCKET}/teacher/requests.jsonl"]},
            },
            "outputConfig": {
                "predictionsFormat": "jsonl",
                "gcsDestination": {"outputUriPrefix": f"gs://{DEFAULT_BUCKET}/teacher/out"},
            },
        }
        created = client.create_batch_prediction_job(
            parent="projects/cli-teacher/locations/us-central1",
            batch_prediction_job=BatchPredictionJob.from_json(json.dumps(body)),
        )

        def done() -> BatchPredictionJob | None:
            job = client.get_batch_prediction_job(name=created.name)
            ended = job.state.name in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED")
            return job if ended else None

        job = wait_for(done, timeout=120, interval=0.5, what=created.name)
        assert job.state.name == "JOB_STATE_SUCCEEDED", job.error.message
        directory = job.output_info.gcs_output_directory.removeprefix(f"gs://{DEFAULT_BUCKET}/")
        [output] = [
            json.loads(line)
            for line in bucket.blob(f"{directory}/{GEMINI_BATCH_PREDICTIONS_FILE}")
            .download_as_text()
            .splitlines()
        ]
        answer = judge_output(1, output)
        assert answer.outcome == "labeled", answer
        assert answer.answer in CLASSES and answer.rationale, answer
    finally:
        _dev("down", "--state-dir", str(state))


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_localstack_cli_reports_missing_emulators(tmp_path: Path) -> None:
    env = {**os.environ, "CLOUDSDK_ROOT_DIR": str(tmp_path / "sdk")}
    up = _dev("up", "--state-dir", str(tmp_path / "state"), env=env)
    assert up.returncode == 3
    assert "gcloud components install pubsub-emulator" in up.stderr
    assert "google-cloud-cli-firestore-emulator" in up.stderr
    assert not (tmp_path / "state" / "stack.json").exists()
