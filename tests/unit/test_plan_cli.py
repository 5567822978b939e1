"""``distillery plan``: human and JSON output, overrides, exit codes."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from distillery import policy
from distillery.commands import cli
from distillery.commands import plan as plan_cli
from distillery.core.settings import ENVIRONMENT
from tests.unit.test_policy import install_validation_stub

KEY = "projects/p-1/locations/us-central1/keyRings/ring/cryptoKeys/key"


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    install_validation_stub(monkeypatch)
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "p-1")
    monkeypatch.setenv("DISTILLERY_BUCKET", "bkt")
    # These tests read the pipeline backend's plan; the default backend's is tested on its own.
    monkeypatch.setenv("DISTILLERY_BACKEND", "pipeline")
    yield


def run_plan(*argv: str) -> int:
    """``distillery plan ARGV`` through the real CLI (or the plan command alone while the other
    capabilities' CLI modules are not there yet)."""
    try:
        cli.build_parser()
    except ImportError:
        parser = argparse.ArgumentParser(prog="distillery")
        plan_cli.register(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(["plan", *argv])
        code: int = args.handler(args)
        return code
    return cli.main(["plan", *argv])


def write_dataset(folder: Path, name: str = "news", examples: int = 240) -> Path:
    path = folder / f"{name}.jsonl"
    lines = [
        json.dumps(
            {
                "input_text": "Classify the following text into one of the following classes: "
                f"[business, entertainment] Text: headline number {i} about markets",
                "output_text": "business" if i % 2 else "entertainment",
            }
        )
        for i in range(examples)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_plan_human_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = write_dataset(tmp_path)

    assert run_plan(str(dataset), "--set", "train_steps=15") == 0

    out = capsys.readouterr().out
    assert out.startswith("Plan: ACCEPTED")
    assert "  batch_size                  : 8\n" in out
    assert "  epochs                      : 0.5\n" in out
    assert "  - epochs 0.5: 15 steps x 8 = 120 examples seen / 240 examples" in out
    body = json.loads(out[out.index("\n{") + 1 :])
    assert body["runtimeConfig"]["parameterValues"]["train_steps"] == 15
    assert "/locations/us-central1/pipelineJobs?pipelineJobId=news-distilled-" in out


def test_plan_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = write_dataset(tmp_path)

    assert run_plan(str(dataset), "--json", "--set", "accelerator_type=TPU") == 0

    result = json.loads(capsys.readouterr().out)
    assert set(result) == {
        "spec",
        "reasons",
        "refusals",
        "request",
        "labeling",
        "labeling_request",
        "job_id",
        "assumed",
    }
    assert result["labeling"] is None and result["labeling_request"] is None  # A pipeline job.
    assert result["assumed"] == {}
    spec = result["spec"]
    assert (spec["accelerator_type"], spec["batch_size"], spec["train_steps"]) == ("TPU", 24, 300)
    assert spec["epochs"] == 30.0
    assert spec["dataset_uri"].startswith("gs://bkt/validated/")
    assert spec["dataset_uri"].endswith("/news.jsonl")
    assert result["refusals"] == []
    assert result["request"]["runtimeConfig"]["parameterValues"]["accelerator_type"] == "TPU"
    assert policy.JOB_ID_PATTERN.match(result["job_id"])


def test_plan_sidecar_config_then_set_wins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = write_dataset(tmp_path)
    (tmp_path / "news.config.json").write_text(
        json.dumps({"train_steps": 20, "learning_rate_multiplier": 3.0})
    )

    assert run_plan(str(dataset), "--json", "--set", "train_steps=40") == 0

    spec = json.loads(capsys.readouterr().out)["spec"]
    assert (spec["train_steps"], spec["learning_rate_multiplier"]) == (40, 3.0)


def test_plan_picks_up_sibling_eval_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = write_dataset(tmp_path)
    write_dataset(tmp_path, "news.eval", examples=20)

    assert run_plan(str(dataset), "--json", "--set", "enable_early_stopping=false") == 0

    result = json.loads(capsys.readouterr().out)
    values = result["request"]["runtimeConfig"]["parameterValues"]
    assert values["evaluation_data_uri"].endswith("/news.eval.jsonl")
    assert values["enable_early_stopping"] is False
    assert result["spec"]["eval_examples"] == 20


def test_plan_refused_exits_1_with_every_refusal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = write_dataset(tmp_path)

    code = run_plan(
        str(dataset),
        "--set",
        "accelerator_type=TPU",
        "--set",
        f"encryption_spec_key_name={KEY}",
        "--set",
        "evaluation_interval=10",
    )

    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("Plan: REFUSED by policy")
    refusals = out[out.index("Refusals:") : out.index("Request (")]
    assert "TPU tuning has no CMEK" in refusals
    assert "evaluation_interval" in refusals


def test_plan_refused_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DISTILLERY_MAX_CONCURRENT_JOBS", "2")
    dataset = write_dataset(tmp_path)
    assert run_plan(str(dataset), "--json", "--running-jobs", "1") == 0
    capsys.readouterr()

    code = run_plan(str(dataset), "--json", "--running-jobs", "2", "--set", "train_steps=0")

    refusals = json.loads(capsys.readouterr().out)["refusals"]
    assert code == 1
    assert any("DISTILLERY_MAX_CONCURRENT_JOBS" in refusal for refusal in refusals)
    assert any("train_steps" in refusal for refusal in refusals)


def test_plan_gcs_dataset_needs_examples(capsys: pytest.CaptureFixture[str]) -> None:
    uri = "gs://bkt/validated/abc/news.jsonl"

    assert run_plan(uri) == 2
    assert "--examples" in capsys.readouterr().err

    assert run_plan(uri, "--examples", "240", "--json", "--set", "accelerator_type=TPU") == 0
    spec = json.loads(capsys.readouterr().out)["spec"]
    assert (spec["dataset_uri"], spec["examples_seen"], spec["epochs"]) == (uri, 7200, 30.0)


def gcloud_on_path(folder: Path, monkeypatch: pytest.MonkeyPatch, script: str | None) -> Path:
    """PATH holds only ``folder``, with a ``gcloud`` running ``script`` (None: no gcloud at all).

    Returns the file the fake gcloud appends its arguments to, once per call.
    """
    calls = folder / "gcloud-calls"
    if script is not None:
        program = folder / "gcloud"
        program.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n{script}\n')
        program.chmod(0o755)
    monkeypatch.setenv("PATH", str(folder))
    return calls


def test_plan_without_project_or_bucket_plans_with_placeholders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    monkeypatch.delenv("DISTILLERY_BUCKET")
    dataset = write_dataset(tmp_path)
    gcloud_on_path(tmp_path, monkeypatch, script=None)

    assert run_plan(str(dataset)) == 0
    out = capsys.readouterr().out
    assert out.startswith("Plan: ACCEPTED")
    assert "  project: your-project (placeholder: pass --project)\n" in out
    assert "  bucket: your-bucket (placeholder: pass --bucket)\n" in out
    assert "/v1/projects/your-project/locations/us-central1/pipelineJobs?" in out

    assert run_plan(str(dataset), "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["assumed"] == {
        "project": {
            "value": "your-project",
            "source": "placeholder",
            "note": "placeholder: pass --project",
        },
        "bucket": {
            "value": "your-bucket",
            "source": "placeholder",
            "note": "placeholder: pass --bucket",
        },
    }
    assert result["spec"]["project"] == "your-project"
    assert result["spec"]["dataset_uri"].startswith("gs://your-bucket/validated/")
    assert result["refusals"] == []


def test_plan_without_a_backend_shows_the_tuning_jobs_body(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DISTILLERY_BACKEND")
    dataset = write_dataset(tmp_path)

    assert run_plan(str(dataset)) == 0
    out = capsys.readouterr().out
    assert out.startswith("Plan: ACCEPTED")
    assert "  backend                  : gemini\n" in out
    assert "/v1/projects/p-1/locations/us-central1/tuningJobs):\n" in out
    assert "pipelineJobs" not in out

    assert run_plan(str(dataset), "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["spec"]["backend"] == "gemini"
    body = result["request"]
    assert body["labels"] == {"distillery-job-id": result["job_id"]}
    assert body["supervisedTuningSpec"]["trainingDatasetUri"].startswith("gs://bkt/validated/")
    assert "templateUri" not in body and "runtimeConfig" not in body


def test_plan_given_project_and_bucket_assume_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    monkeypatch.delenv("DISTILLERY_BUCKET")
    dataset = write_dataset(tmp_path)
    calls = gcloud_on_path(tmp_path, monkeypatch, script="echo gcloud-p")

    assert run_plan(str(dataset), "--project", "explicit-p", "--bucket", "b-1", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["spec"]["project"] == "explicit-p"
    assert result["spec"]["dataset_uri"].startswith("gs://b-1/validated/")
    assert result["assumed"] == {}
    assert not calls.exists()  # A project given is never looked up.

    assert run_plan(str(dataset), "--bucket", "b-1") == 0
    out = capsys.readouterr().out
    assert "placeholder" not in out and "bucket:" not in out


def test_plan_takes_the_project_gcloud_is_configured_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    dataset = write_dataset(tmp_path)
    calls = gcloud_on_path(tmp_path, monkeypatch, script="echo gcloud-p")

    assert run_plan(str(dataset)) == 0
    out = capsys.readouterr().out
    assert "  project: gcloud-p (from gcloud config: pass --project for another)\n" in out
    assert "/v1/projects/gcloud-p/locations/" in out
    assert calls.read_text() == "config get-value project --quiet\n"

    assert run_plan(str(dataset), "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["spec"]["project"] == "gcloud-p"
    assert result["assumed"] == {
        "project": {
            "value": "gcloud-p",
            "source": "gcloud config",
            "note": "from gcloud config: pass --project for another",
        }
    }


@pytest.mark.parametrize(
    "script",
    [
        pytest.param("echo '(unset)' >&2", id="unset"),
        pytest.param("echo '(unset)'", id="unset-on-stdout"),
        pytest.param("echo 'ERROR: gcloud crashed' >&2; exit 1", id="fails"),
    ],
)
def test_plan_uses_the_placeholder_when_gcloud_has_no_project(
    script: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    dataset = write_dataset(tmp_path)
    calls = gcloud_on_path(tmp_path, monkeypatch, script=script)

    assert run_plan(str(dataset), "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert calls.exists()
    assert result["spec"]["project"] == "your-project"
    assert result["assumed"]["project"]["source"] == "placeholder"


def test_plan_does_not_wait_for_a_slow_gcloud(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    monkeypatch.setattr(plan_cli, "GCLOUD_TIMEOUT", 0.3)
    dataset = write_dataset(tmp_path)
    gcloud_on_path(tmp_path, monkeypatch, script="exec /bin/sleep 30")

    started = time.monotonic()
    assert run_plan(str(dataset), "--json") == 0
    assert time.monotonic() - started < 10
    assert json.loads(capsys.readouterr().out)["spec"]["project"] == "your-project"


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["missing.jsonl"], id="no-such-file"),
        pytest.param(["{dataset}", "--set", "train_steps"], id="set-without-equals"),
        pytest.param(["{dataset}", "--examples", "5"], id="examples-for-local-file"),
    ],
)
def test_plan_usage_errors_exit_2(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = write_dataset(tmp_path)
    resolved = [arg.format(dataset=dataset) for arg in argv]
    assert run_plan(*resolved) == 2
    assert capsys.readouterr().err.startswith("distillery plan: ")


def test_plan_invalid_dataset_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = write_dataset(tmp_path)
    with dataset.open("a") as stream:
        stream.write("this is not json\n")

    assert run_plan(str(dataset)) == 1
    err = capsys.readouterr().err
    assert f"{dataset} is invalid" in err
    assert "line 241" in err


def test_plan_invalid_sidecar_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = write_dataset(tmp_path)
    (tmp_path / "news.config.json").write_text("[1, 2")

    assert run_plan(str(dataset)) == 1
    assert "news.config.json is invalid" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("train_steps=500", ("train_steps", 500), id="int"),
        pytest.param("enable_early_stopping=false", ("enable_early_stopping", False), id="bool"),
        pytest.param("learning_rate_multiplier=0.5", ("learning_rate_multiplier", 0.5), id="float"),
        pytest.param("accelerator_type=TPU", ("accelerator_type", "TPU"), id="string"),
        pytest.param("model_display_name=a=b", ("model_display_name", "a=b"), id="equals-in-value"),
        pytest.param('task="other"', ("task", "other"), id="json-string"),
    ],
)
def test_parse_assignment(text: str, expected: tuple[str, Any]) -> None:
    assert plan_cli.parse_assignment(text) == expected


@pytest.mark.parametrize("text", ["train_steps", "=5"])
def test_parse_assignment_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        plan_cli.parse_assignment(text)
