"""The default backend end to end on a local stack of its own: a dataset dropped in the bucket is
tuned through ``tuningJobs``, judged and promoted, and its model answers ``:generateContent``.

The stack runs the product's default backend (``gemini``: no ``DISTILLERY_BACKEND`` reaches it)
and polls tuning jobs every second (``poll_tuning_jobs_seconds``) instead of every minute, so a
tuning job's states are seen within seconds. Training stays short: a few dozen examples, whose
default three epochs are a few dozen steps of the local trainer. The session stack of the other
``test_localstack_*`` files runs the pipeline backend; this one is started (and stopped) here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import GenAiTuningServiceClient, ListTuningJobsRequest

from distillery import policy
from distillery.local import demo
from distillery.local.example_data import generate
from distillery.local.stack import StackConfig
from distillery.local.stack.harness import StackHarness
from distillery.services.datasets import dataset_id
from tests.helpers import jsonl
from tests.integration.default_stack import default_backend_stack, follow, stack_dependencies

pytestmark = pytest.mark.integration

#: The states a promoted gemini job is announced in, in order.
PROMOTED_PATH = ["REQUESTED", "SUBMITTED", "RUNNING", "SUCCEEDED", "EVALUATING", "PROMOTED"]


@pytest.fixture(scope="module")
def gemini_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHarness]:
    """A stack of the default backend, its client environment set in this process meanwhile."""
    config = StackConfig.ephemeral(
        tmp_path_factory.mktemp("geministack"), startup_timeout=180.0, poll_tuning_jobs_seconds=1
    )
    with default_backend_stack(config) as harness:
        yield harness


@pytest.mark.timeout(600)
def test_default_backend_tunes_promotes_and_answers_generate_content(
    gemini_stack: StackHarness,
) -> None:
    harness, settings = gemini_stack, gemini_stack.settings
    assert settings.backend == "gemini"
    status = harness.subscribe(settings.status_topic)
    train, golden = generate(48, 12, seed=7)
    harness.upload("datasets/news-tuned.eval.jsonl", jsonl(golden))
    blob = harness.upload("datasets/news-tuned.jsonl", jsonl(train))

    announced = follow(harness, status, timeout=480)
    [(job_id, states)] = announced.items()
    assert states == PROMOTED_PATH, states

    deps = stack_dependencies(harness)
    record = deps.records.get(settings.jobs_collection, job_id)
    assert record is not None and record["state"] == "PROMOTED", record
    assert record["backend"] == "gemini" and record.get("pipeline_job") is None
    dataset = deps.records.get(
        settings.datasets_collection, dataset_id(settings.bucket, blob.name, blob.generation)
    )
    assert dataset is not None and record["request"]["dataset_uri"] == dataset["validated_uri"]
    # The tuning job trained on the converted copy: `contents` lines, not the upload's.
    copy = deps.objects.read_bytes(*dataset["validated_uri"][5:].split("/", 1))
    lines = [json.loads(line) for line in copy.splitlines()]
    assert len(lines) == len(train)
    assert all(set(line) == {"contents"} for line in lines), lines[0]
    assert [turn["role"] for turn in lines[0]["contents"]] == ["user", "model"]
    assert lines[0]["contents"][1]["parts"] == [{"text": train[0].output_text}]

    # The official GAPIC client finds the one tuning job by its label.
    location = settings.region
    tuning = GenAiTuningServiceClient(
        transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": harness.stack.vertex_url},
    )
    label = record["request_body"]["labels"][policy.JOB_LABEL_KEY]
    assert label == policy.job_label(job_id)
    [job] = tuning.list_tuning_jobs(
        request=ListTuningJobsRequest(
            parent=f"projects/{settings.project}/locations/{location}",
            filter=f'labels.{policy.JOB_LABEL_KEY}="{label}"',
        )
    )
    assert job.name == record["tuning_job"]
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    assert job.base_model == record["request_body"]["baseModel"]
    assert job.supervised_tuning_spec.training_dataset_uri == dataset["validated_uri"]
    assert re.fullmatch(r"projects/.+/models/[^@]+@\d+", job.tuned_model.model)
    assert job.tuned_model.endpoint == record["endpoint"]

    # The promoted endpoint answers :generateContent through google-genai, pointed at the stack.
    from google import genai
    from google.genai import types
    from google.oauth2.credentials import Credentials

    client = genai.Client(
        vertexai=True,
        project=settings.project,
        location=location,
        # A static token: google-genai refreshes anonymous credentials, which cannot refresh.
        credentials=Credentials(token="local"),  # type: ignore[no-untyped-call]
        http_options=types.HttpOptions(base_url=harness.stack.vertex_url, api_version="v1"),
    )
    greedy = types.GenerateContentConfig(temperature=0)
    answers = [
        client.models.generate_content(
            model=record["endpoint"], contents=e.input_text, config=greedy
        ).text
        for e in golden
    ]
    labels = {str(e.output_text) for e in train}
    assert all(answer in labels for answer in answers), answers
    # The golden set is the job's eval set: the official client hears what the promoter heard.
    judged = record["promotion"]["evaluation"]["candidate"]["accuracy"]
    correct = sum(a == e.output_text for a, e in zip(answers, golden, strict=True))
    assert correct / len(golden) == pytest.approx(judged), (answers, judged)


@pytest.mark.timeout(1200)  # two tunings (375 and 125 steps), each judged on 100 prompts
def test_the_demo_runs_the_default_backend_end_to_end(
    gemini_stack: StackHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    state = gemini_stack.stack.state()
    state.save()  # what `distillery dev up` records, and the demo reads
    assert demo.run(state.state_dir, "ci-gemini-demo") == 0
    out = capsys.readouterr().out
    assert "verdict: INVALID" in out
    assert "backend: gemini (the stack's DISTILLERY_BACKEND)" in out
    assert "tuning job: projects/" in out and "request body sent to tuningJobs.create:" in out
    for state_name in PROMOTED_PATH[1:]:
        assert re.search(rf"^\S+  \S+  {state_name}", out, re.MULTILINE), (state_name, out)
    assert "eval prompts sent to the endpoint (:generateContent):" in out
    assert re.search(r"^   [4-8]/8 correct$", out, re.MULTILINE), out
    assert "pipelineJobs" not in out
    # The worse rerun (one epoch at a thousandth of the learning rate) is rejected.
    assert "rerun with settings that make a worse model (epoch_count 1, learning" in out
    promoted, rejected = re.findall(r"^\S+  (\S+)  (?:PROMOTED|REJECTED)", out, re.MULTILINE)
    assert promoted != rejected
    assert re.search(r"paired difference -\d\.\d{4}, 95% CI -\d\.\d{4} to [-+]\d\.\d{4}", out), out
    assert f"champion unchanged: job {promoted}," in out
    assert "its endpoint still answers: projects/" in out
