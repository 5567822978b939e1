"""The seed's loading snippet, unchanged, against the local stack's Vertex AI API.

A short real distillation runs on the stack's emulator (the real trainer); then the Vertex AI SDK
(``vertexai.language_models`` of google-cloud-aiplatform), pointed at the emulator over REST with
anonymous credentials, loads the tuned model by its resource name and asks it a prompt::

    from vertexai.language_models import TextGenerationModel
    model = TextGenerationModel.get_tuned_model(name)
    model.predict(prompt).text

That needs what the SDK reads: the model's ``google-vertex-llm-tuning-base-model-id`` label and
its deployments (the pipeline's own endpoint), the base model's publisher model with its instance
schema, and ``:predict`` with ``{"content": prompt}`` instances.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform import initializer

from distillery.local.example_data import generate
from tests.integration.test_emulator_training import REGION, Vertex, _task, _upload

pytestmark = pytest.mark.integration


@pytest.fixture
def vertex(stack: Any) -> Iterator[Vertex]:
    clients = Vertex(stack)
    clients.cancel_leftovers()
    # vertexai.init sets the SDK's process-wide configuration: undo it afterwards.
    saved = dict(vars(initializer.global_config))
    yield clients
    vars(initializer.global_config).clear()
    vars(initializer.global_config).update(saved)


def _direct_answer(stack: Any, endpoint: str, prompt: str) -> str:
    """The endpoint's answer to ``prompt``, asked over plain REST (no SDK)."""
    request = urllib.request.Request(
        f"{stack.stack.vertex_url}/v1/{endpoint}:predict",
        data=json.dumps({"instances": [{"prompt": prompt}]}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return str(json.loads(answer.read())["predictions"][0]["content"])


def test_the_seed_s_sdk_snippet_loads_and_asks_a_distilled_model(
    stack: Any, vertex: Vertex
) -> None:
    train, evaluation = generate(200, 20)
    dataset = _upload(stack, "validated/sdk/news.jsonl", train)
    created = vertex.create(stack, "sdk-1", dataset_uri=dataset, train_steps=40)
    job = vertex.wait(created.name, timeout=240)
    assert job.state.name == "PIPELINE_STATE_SUCCEEDED", job.error.message
    name = _task(job, "upload-llm-model").execution.metadata["output:model_resource_name"]
    own = _task(job, "deploy-llm-model").execution.metadata["output:endpoint_resource_name"]
    endpoints_before = [e.name for e in vertex.endpoints.list_endpoints(parent=vertex.parent)]
    prompt = evaluation[0].input_text

    import vertexai

    vertexai.init(
        project=stack.project,
        location=REGION,
        api_endpoint=stack.stack.vertex_url,
        api_transport="rest",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
    )
    # The seed's snippet, exactly.
    from vertexai.language_models import TextGenerationModel

    model = TextGenerationModel.get_tuned_model(name)
    text = model.predict(prompt).text  # type: ignore[attr-defined]

    assert isinstance(text, str)
    # The SDK found the pipeline's own deployment (it would deploy the model itself otherwise)
    # and the answer is that endpoint's, the same greedy decoding asked directly.
    assert [e.name for e in vertex.endpoints.list_endpoints(parent=vertex.parent)] == (
        endpoints_before
    )
    assert own in endpoints_before
    assert text == _direct_answer(stack, own, prompt)
