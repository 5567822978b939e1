"""``distillery predict`` asks a family's champion the way its backend answers: a tuned Gemini
model through ``:generateContent`` on its own endpoint, a pipeline model through ``:predict``;
and the way it was trained: a step-by-step champion after its ``prompt_prefix`` (``--raw``: the
prompt as given)."""

from __future__ import annotations

import json

import pytest

from distillery.commands.cli import main
from distillery.commands.ops import predict as predict_command
from distillery.core.runtime import Dependencies
from distillery.local.judged import EXAMPLES, WRONG, succeeded_job
from distillery.services.promoter import promote
from tests.helpers import BUCKET, AskedModels, fake_dependencies
from tests.unit.test_promoter_gemini import FAMILY, _gemini_job
from tests.unit.test_promoter_labeling import PREDICT, gemini_job


@pytest.fixture
def deps(monkeypatch: pytest.MonkeyPatch) -> Dependencies:
    deps = fake_dependencies()
    monkeypatch.setattr(predict_command, "dependencies", lambda *required: deps)
    return deps


def _step_by_step_champion(deps: Dependencies) -> tuple[str, AskedModels]:
    """A promoted step-by-step champion (label task prefix :data:`PREDICT`) that answers the
    whole golden set right, asked that way; its endpoint, and what it is asked from now on."""
    endpoint = gemini_job(deps, "sbs-1", 1.0, trained_with=PREDICT)
    promote("sbs-1", deps)
    return endpoint, AskedModels(deps)


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


def test_predict_sends_a_step_by_step_champion_its_prompt_prefix_and_says_so(
    deps: Dependencies, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, sent = _step_by_step_champion(deps)
    prompt, answer = EXAMPLES[0]

    assert main(["predict", FAMILY, prompt]) == 0

    out, err = capsys.readouterr()
    assert out.strip() == answer
    assert f"prompt prefix {PREDICT!r}" in err and "--raw" in err
    assert sent.by_endpoint[endpoint] == [PREDICT + prompt]

    assert main(["predict", FAMILY, prompt, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["prompt_prefix"] == PREDICT
    assert shown["predictions"] == [{"prompt": prompt, "content": answer}]


def test_predict_raw_sends_the_prompt_as_given(
    deps: Dependencies, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, sent = _step_by_step_champion(deps)
    prompt, _ = EXAMPLES[0]

    assert main(["predict", FAMILY, prompt, "--raw", "--json"]) == 0

    shown = json.loads(capsys.readouterr().out)
    assert shown["prompt_prefix"] == ""
    # Asked a form it never learned, the step-by-step model answers wrong.
    assert shown["predictions"] == [{"prompt": prompt, "content": WRONG}]
    assert sent.by_endpoint[endpoint] == [prompt]


def test_predict_sends_a_champion_without_prefix_the_prompt_as_given(
    deps: Dependencies, capsys: pytest.CaptureFixture[str]
) -> None:
    succeeded_job(deps, "pipe-1", FAMILY, 1.0, bucket=BUCKET)
    promote("pipe-1", deps)
    prompt, answer = EXAMPLES[2]

    assert main(["predict", FAMILY, prompt]) == 0

    out, err = capsys.readouterr()
    assert out.strip() == answer
    assert "prefix" not in err
    assert main(["predict", FAMILY, prompt, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["prompt_prefix"] == ""
    assert shown["predictions"] == [{"prompt": prompt, "content": answer}]


def test_predict_by_endpoint_name_sends_no_prefix(
    deps: Dependencies, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, sent = _step_by_step_champion(deps)
    prompt, _ = EXAMPLES[0]

    # An endpoint named directly is not a family: nothing says how its model is asked.
    assert main(["predict", endpoint, prompt, "--generate"]) == 0

    assert capsys.readouterr().out.strip() == WRONG
    assert sent.by_endpoint[endpoint] == [prompt]
