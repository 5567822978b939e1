"""``distillery predict`` asks a family's champion the way its backend answers: a tuned Gemini
model through ``:generateContent`` on its own endpoint, a pipeline model through ``:predict``."""

from __future__ import annotations

import json

import pytest

from distillery.commands.cli import main
from distillery.commands.ops import predict as predict_command
from distillery.core.runtime import Dependencies
from distillery.local.judged import EXAMPLES
from distillery.services.promoter import promote
from tests.helpers import fake_dependencies
from tests.unit.test_promoter_gemini import FAMILY, _gemini_job


@pytest.fixture
def deps(monkeypatch: pytest.MonkeyPatch) -> Dependencies:
    deps = fake_dependencies()
    monkeypatch.setattr(predict_command, "dependencies", lambda *required: deps)
    return deps


def test_predict_asks_a_gemini_champion_through_generate_content_on_its_endpoint(
    deps: Dependencies, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = _gemini_job(deps, "g1", correct=1.0)
    promote("g1", deps)
    prompt, answer = EXAMPLES[0]

    assert main(["predict", FAMILY, prompt, "--json"]) == 0

    shown = json.loads(capsys.readouterr().out)
    assert shown["endpoint"] == endpoint
    assert shown["api"] == "generateContent"
    assert shown["predictions"] == [{"prompt": prompt, "content": answer}]


def test_predict_generate_flag_asks_an_endpoint_by_name_and_a_deleted_one_exits_1(
    deps: Dependencies, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = _gemini_job(deps, "g1", correct=1.0)
    prompt, answer = EXAMPLES[1]

    assert main(["predict", endpoint, prompt, "--generate"]) == 0
    assert capsys.readouterr().out.strip() == answer

    deps.require_endpoints().undeploy(
        endpoint,
        deps.require_endpoints().get_endpoint(endpoint).deployed_models[0].deployed_model_id,
    )
    deps.require_endpoints().delete_endpoint(endpoint)
    assert main(["predict", endpoint, prompt, "--generate"]) == 1
    assert f"there is no endpoint {endpoint}" in capsys.readouterr().err
