"""Jobs whose models answer a golden set as scripted, on the in-memory ports.

What a SUCCEEDED job looks like to the promoter once its pipeline finished: the model in the
registry, deployed on an endpoint of its own named after the model's display name (SPEC "After
the job"), the job's eval set in the bucket. The model answers the eval set's examples correctly
on a chosen share of them (the first ones, in order), so two models' paired difference is known:
a 0.9 model and a 0.6 one differ on exactly 30% of the examples. For the promoter's tests and
the chaos scenarios on the fakes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from distillery.core.jobs import new_record
from distillery.core.models import JobState
from distillery.core.runtime import Dependencies
from distillery.fakes import InMemoryModelEndpoints

#: The classes of the scripted classification task.
CLASSES = ("business", "sports")

#: The golden set: 20 classification examples (the eval-set rules ask for 10 to 250).
EXAMPLES: tuple[tuple[str, str], ...] = tuple(
    (
        "Classify the following text into one of the following classes: "
        f"[{', '.join(CLASSES)}] Text: headline number {index}",
        CLASSES[index % len(CLASSES)],
    )
    for index in range(20)
)

#: What a model answers when it gets an example wrong.
WRONG = "unsure"


def eval_set_bytes(examples: Sequence[tuple[str, str]] = EXAMPLES) -> bytes:
    """The JSONL of ``examples`` (input_text/output_text lines)."""
    return b"".join(
        json.dumps({"input_text": prompt, "output_text": answer}).encode() + b"\n"
        for prompt, answer in examples
    )


def write_eval_set(
    deps: Dependencies, bucket: str, examples: Sequence[tuple[str, str]] = EXAMPLES
) -> str:
    """Store ``examples`` as a validated, content-addressed eval set; its gs:// URI."""
    data = eval_set_bytes(examples)
    name = f"validated/{hashlib.sha256(data).hexdigest()}/news.eval.jsonl"
    if deps.objects.find(bucket, name) is None:
        deps.objects.write_bytes(bucket, name, data, content_type="application/jsonl")
    return f"gs://{bucket}/{name}"


def scripted(
    correct: float, examples: Sequence[tuple[str, str]] = EXAMPLES
) -> Callable[[str], str]:
    """A model that answers the first ``correct`` share of ``examples`` right, the rest wrong
    (and echoes any other prompt)."""
    right = round(correct * len(examples))
    answers = {
        prompt: (answer if index < right else WRONG)
        for index, (prompt, answer) in enumerate(examples)
    }
    return lambda prompt: answers.get(prompt, prompt)


def succeeded_job(
    deps: Dependencies,
    job_id: str,
    family: str,
    correct: float,
    *,
    bucket: str,
    metrics: Mapping[str, float] | None = None,
    overrides: Mapping[str, Any] | None = None,
    examples: Sequence[tuple[str, str]] = EXAMPLES,
    eval_set: bool = True,
) -> str:
    """Record a SUCCEEDED job of ``family`` whose model answers ``correct`` of the eval set
    right, deployed on its own endpoint as its pipeline did; the model's resource name.

    ``metrics`` are the token metrics the service reported (None: it reported none).
    ``eval_set`` False: the job had no eval set.
    """
    endpoints = deps.endpoints
    assert isinstance(endpoints, InMemoryModelEndpoints)
    model = endpoints.add_model(f"m-{job_id}", family, metrics, answer=scripted(correct, examples))
    own = endpoints.create_endpoint(family, "us-central1")
    endpoints.deploy_now(own.name, model)
    spec: dict[str, Any] = {"model_display_name": family}
    if eval_set:
        spec["evaluation_data_uri"] = write_eval_set(deps, bucket, examples)
    record = new_record(
        job_id,
        JobState.SUCCEEDED,
        deps.clock(),
        {
            "spec": spec,
            "model": model,
            "candidate_endpoint": own.name,
            "request": {
                "dataset_uri": f"gs://{bucket}/validated/x/news.jsonl",
                "overrides": dict(overrides or {}),
            },
            **({"metrics": dict(metrics)} if metrics is not None else {}),
        },
    )
    record["announced"] = ["SUCCEEDED"]
    deps.records.set(deps.settings.jobs_collection, job_id, record)
    return model
