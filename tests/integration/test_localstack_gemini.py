"""The default backend end to end on a local stack of its own: a dataset dropped in the bucket is
tuned through ``tuningJobs``, judged and promoted, and its model answers ``:generateContent``.

The stack runs the product's default backend (``gemini``: no ``DISTILLERY_BACKEND`` reaches it)
and polls tuning jobs every second (``poll_tuning_jobs_seconds``) instead of every minute, so a
tuning job's states are seen within seconds. Training stays short: a few dozen examples, whose
default three epochs are a few dozen steps of the local trainer. The session stack of the other
``test_localstack_*`` files runs the pipeline backend; this one is started (and stopped) here.
Its Vertex AI emulator has the local teacher ``distillery dev up`` provides (the session's,
trained once, a minute or three), which the demo's step-by-step act needs: its unlabeled
training set is labeled by the teacher's batch job.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import GenAiTuningServiceClient, ListTuningJobsRequest

from distillery import policy
from distillery.labeling import OUTCOMES
from distillery.local import demo
from distillery.local.example_data import CLASSES, generate
from distillery.local.stack import StackConfig
from distillery.local.stack.harness import StackHarness
from distillery.local.teachers import STACK_TEACHER_MODELS, LocalTeacher
from distillery.services.datasets import dataset_id
from tests.helpers import jsonl
from tests.integration.default_stack import default_backend_stack, follow, stack_dependencies

pytestmark = pytest.mark.integration

#: The states a promoted gemini job is announced in, in order.
PROMOTED_PATH = ["REQUESTED", "SUBMITTED", "RUNNING", "SUCCEEDED", "EVALUATING", "PROMOTED"]


@pytest.fixture(scope="module")
def gemini_stack(
    tmp_path_factory: pytest.TempPathFactory, local_teacher: LocalTeacher
) -> Iterator[StackHarness]:
    """A stack of the default backend with the local teacher, its client environment set in
    this process meanwhile."""
    config = StackConfig.ephemeral(
        tmp_path_factory.mktemp("geministack"),
        startup_timeout=180.0,
        poll_tuning_jobs_seconds=1,
        # What `distillery dev up` hands its emulator (the session's cached local teacher).
        vertex_env=local_teacher.env(STACK_TEACHER_MODELS),
    )
    with default_backend_stack(config) as harness:
        yield harness


@pytest.mark.timeout(900)  # the module's fixtures (the teacher, the stack) first, then one tuning
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


#: The demo's step-by-step act's lines: the job's LABELING state, its batch prediction job,
#: the teacher's counts, a labeled line's rationale, the two tasks' answers.
LABELING_LINE = re.compile(r"^\S+  (\S+)  LABELING", re.MULTILINE)
BATCH_JOB_LINE = re.compile(
    r"^   batch prediction job: projects/[^/]+/locations/[^/]+/batchPredictionJobs/\S+$",
    re.MULTILINE,
)
COUNTS_LINE = re.compile(r"^   the teacher's answers: (.+) \(of (\d+): ", re.MULTILINE)
RATIONALE_LINE = re.compile(r"^        rationale \(gemini-2\.5-pro\): '(.+)'$", re.MULTILINE)
LABEL_TASK_ANSWER = re.compile(r"^   predict: .+ -> '(.*)' \(expected '(\w+)'\)$", re.MULTILINE)
RATIONALE_TASK_ANSWER = re.compile(r"^   explain: .+ -> '(.*)'$", re.MULTILINE)


# Budget: the module's fixtures when run alone (the teacher 1-3 min, the stack), two tunings
# (375 and 125 steps) each judged on 100 prompts (about 4 min), then the step-by-step act
# (300 prompts labeled, about 225 steps, 50 prompts judged: about 2 min); a busy machine
# doubles it.
@pytest.mark.timeout(1800)
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
    decided = re.findall(r"^\S+  (\S+)  (PROMOTED|REJECTED)", out, re.MULTILINE)
    [(promoted, first), (rejected, second), (step_by_step, final)] = decided
    assert (first, second) == ("PROMOTED", "REJECTED"), decided
    assert len({promoted, rejected, step_by_step}) == 3, decided
    assert re.search(r"paired difference -\d\.\d{4}, 95% CI -\d\.\d{4} to [-+]\d\.\d{4}", out), out
    assert f"champion unchanged: job {promoted}," in out
    assert "its endpoint still answers: projects/" in out

    # The step-by-step act: an unlabeled set labeled and explained by the teacher, then tuned.
    act = out[out.index("7. Distilling step-by-step:") :]
    assert f"{demo.STEP_BY_STEP_EXAMPLES} UNLABELED prompts" in act
    [(job_id, states)] = _states_by_job(act).items()
    assert job_id == step_by_step
    assert states == ["REQUESTED", "LABELING", *PROMOTED_PATH[1:]], states
    assert LABELING_LINE.findall(act) == [step_by_step], act
    assert BATCH_JOB_LINE.search(act), act
    assert "teacher model: publishers/google/models/gemini-2.5-pro" in act
    [(shown, of)] = COUNTS_LINE.findall(act)
    counts = {outcome: int(n) for outcome, n in (pair.split(" ") for pair in shown.split(", "))}
    assert set(counts) == set(OUTCOMES), shown
    total, labeled = int(of), counts["labeled"]
    assert total == demo.STEP_BY_STEP_EXAMPLES == sum(counts.values()), shown
    assert labeled >= 0.9 * total, shown  # the default min_labeled_fraction
    assert "labeled.jsonl" in act and "lineage.json" in act, act
    [rationale] = RATIONALE_LINE.findall(act)
    assert rationale.strip(), act
    tasks = re.search(r"(\d+) label tasks \('predict: '\) \+ (\d+) rationale tasks", act)
    assert tasks and int(tasks[1]) == int(tasks[2]) == labeled, act
    assert final == "PROMOTED", act
    assert "its champion entry's prompt_prefix: 'predict: '" in act
    answers = LABEL_TASK_ANSWER.findall(act)
    assert len(answers) == 2 and all(answer in CLASSES for answer, _ in answers), act
    [explained] = RATIONALE_TASK_ANSWER.findall(act)
    assert explained.strip() and explained not in CLASSES, act


def _states_by_job(out: str) -> dict[str, list[str]]:
    """Job id → the states the demo's follower printed for it, in order."""
    states: dict[str, list[str]] = {}
    for job_id, state_name in re.findall(r"^\d\d:\d\d:\d\d  (\S+)  (\S+)", out, re.MULTILINE):
        states.setdefault(job_id, []).append(state_name)
    return states
