"""The promoter on gemini jobs (Vertex AI tuning jobs), on the in-memory ports.

A tuned Gemini model answers ``:generateContent`` on the endpoint its tuning job deployed it on,
and the champion changes by record, not by deployment: no serving endpoint, no canary; a rejected
one's endpoint is deleted; a rollback restores the previous champion by record. Families whose
history mixes the two backends promote and roll back correctly both ways.
"""

from __future__ import annotations

from typing import Any

import pytest

from distillery.core.errors import (
    ContentionError,
    ObjectNotFoundError,
    RequestRejectedError,
)
from distillery.core.models import JobState, StatusEvent
from distillery.core.ports import Mutation
from distillery.core.runtime import Dependencies
from distillery.fakes import (
    InMemoryModelEndpoints,
    InMemoryPublisher,
    InMemoryRecordStore,
    InMemoryTuningJobs,
)
from distillery.local.judged import EXAMPLES, succeeded_job, write_eval_set
from distillery.services import evaluation
from distillery.services.promoter import (
    GEMINI_REGISTRY_NOTE,
    NothingToRollBackError,
    RollbackTargetGoneError,
    promote,
    replace_golden_set,
    rollback,
)
from tests.helpers import (
    BUCKET,
    PROJECT,
    AskedModels,
    fake_dependencies,
    fake_endpoints,
    fake_tuning,
    succeeded_gemini_job,
)

FAMILY = "news-distilled"


def _gemini_job(deps: Dependencies, job_id: str, correct: float, family: str = FAMILY) -> str:
    """A SUCCEEDED gemini job whose model answers the first ``correct`` share of the golden set
    right; its endpoint."""
    return succeeded_gemini_job(deps, job_id, correct, family=family)


def _pipeline_job(deps: Dependencies, job_id: str, correct: float) -> str:
    """A SUCCEEDED pipeline job (its model on an endpoint of its own); its model."""
    return succeeded_job(deps, job_id, FAMILY, correct, bucket=BUCKET)


def _job(deps: Dependencies, job_id: str) -> dict[str, Any]:
    record = deps.records.get("jobs", job_id)
    assert record is not None
    return record


def _family(deps: Dependencies) -> dict[str, Any]:
    doc = deps.records.get("models", FAMILY)
    assert doc is not None
    return doc


def _announced(deps: Dependencies, job_id: str) -> list[str]:
    assert isinstance(deps.publisher, InMemoryPublisher)
    return [
        m.attributes["state"]
        for m in deps.publisher.on("distill-job-status")
        if m.attributes["job_id"] == job_id
    ]


def _gone(deps: Dependencies, endpoint: str) -> bool:
    try:
        fake_endpoints(deps).get_endpoint(endpoint)
    except ObjectNotFoundError:
        return True
    return False


# --- the fake is as unkind as the service ---------------------------------------------------


def test_a_succeeded_fake_tuning_job_registers_an_ordinary_endpoint(deps: Dependencies) -> None:
    endpoint = _gemini_job(deps, "job-1", 1.0)
    endpoints = fake_endpoints(deps)
    model = _job(deps, "job-1")["model"]
    assert model.endswith("@1")
    info = endpoints.get_endpoint(endpoint)
    assert info.display_name == FAMILY
    deployed = info.deployed_id_of(model)
    assert deployed is not None and info.traffic_split == {deployed: 100}
    assert endpoints.get_model(model.split("@")[0]).display_name == FAMILY
    tuning = fake_tuning(deps)
    assert tuning.generate(endpoint, EXAMPLES[0][0]) == EXAMPLES[0][1]
    endpoints.undeploy(endpoint, deployed)
    with pytest.raises(RequestRejectedError):
        tuning.generate(endpoint, EXAMPLES[0][0])
    endpoints.delete_endpoint(endpoint)
    with pytest.raises(ObjectNotFoundError):
        tuning.generate(endpoint, EXAMPLES[0][0])


def test_a_fake_tuning_job_refuses_endpoints_of_another_project() -> None:
    with pytest.raises(ValueError, match="project"):
        InMemoryTuningJobs("p", endpoints=InMemoryModelEndpoints("q"))


def test_the_tuning_adapter_asks_greedily(monkeypatch: pytest.MonkeyPatch) -> None:
    from google.cloud.aiplatform_v1 import (
        Candidate,
        Content,
        GenerateContentResponse,
        GenerationConfig,
        Part,
    )

    from distillery.adapters.tuning import VertexTuningJobsAdapter

    sent: list[Any] = []

    class Client:
        def generate_content(self, request: Any) -> GenerateContentResponse:
            sent.append(request)
            return GenerateContentResponse(
                candidates=[Candidate(content=Content(role="model", parts=[Part(text="ok")]))]
            )

    adapter = VertexTuningJobsAdapter("p")
    monkeypatch.setattr(adapter, "_prediction", lambda location: Client())
    endpoint = "projects/p/locations/us-central1/endpoints/7"
    assert adapter.generate(endpoint, "hello") == "ok"
    [request] = sent
    assert request.model == endpoint
    config = GenerationConfig.pb(request.generation_config)
    # An explicit 0 (the field is optional): not the service's default temperature.
    assert config.HasField("temperature") and config.temperature == 0.0


# --- promotion ------------------------------------------------------------------------------


def test_a_first_gemini_job_is_crowned_on_its_own_endpoint(deps: Dependencies) -> None:
    endpoint = _gemini_job(deps, "job-1", 0.9)
    counting = AskedModels(deps)
    outcome = promote("job-1", deps)
    assert outcome is not None and outcome.state is JobState.PROMOTED
    assert outcome.endpoint == endpoint
    # Asked through generateContent on its own endpoint, one prompt a request.
    assert counting.generated == [endpoint] * len(EXAMPLES)
    endpoints = fake_endpoints(deps)
    # No serving endpoint, no deployment: its own endpoint serves it, as before.
    assert list(endpoints.endpoints) == [endpoint] and endpoints.deploy_calls == 0
    model = _job(deps, "job-1")["model"]
    info = endpoints.get_endpoint(endpoint)
    record = _job(deps, "job-1")
    assert record["state"] == "PROMOTED" and record["endpoint"] == endpoint
    assert record["deployed_model_id"] == info.deployed_id_of(model)
    assert record["promotion"]["backend"] == "gemini"
    assert record["promotion"]["evaluation"]["candidate"]["accuracy"] == 0.9
    assert record["promotion"]["report"]["json"].endswith("decisions/job-1.json")
    states = [h["state"] for h in record["history"]]
    assert states[-3:] == ["SUCCEEDED", "EVALUATING", "PROMOTED"]
    family = _family(deps)
    champion = family["champion"]
    assert champion["backend"] == "gemini" and champion["endpoint"] == endpoint
    assert champion["deployed_model_id"] == info.deployed_id_of(model)
    assert champion["traffic_percent"] == 100 and champion["model"] == model
    assert not family.get("endpoint")  # the family's pipeline serving endpoint: none
    assert family["golden"]["source"] == "the eval set of job job-1"
    assert _announced(deps, "job-1")[-2:] == ["EVALUATING", "PROMOTED"]
    message = deps.publisher.on("distill-job-status")[-1]  # type: ignore[attr-defined]
    assert StatusEvent.model_validate_json(message.data).endpoint == endpoint


def test_a_better_gemini_job_replaces_a_gemini_champion_whose_endpoint_stays(
    deps: Dependencies,
) -> None:
    first = _gemini_job(deps, "job-1", 0.6)
    promote("job-1", deps)
    second = _gemini_job(deps, "job-2", 0.95)
    counting = AskedModels(deps)
    outcome = promote("job-2", deps)
    assert outcome is not None and outcome.state is JobState.PROMOTED
    assert outcome.endpoint == second
    # Both asked live, each through generateContent on its own endpoint.
    assert sorted(set(counting.generated)) == sorted({first, second})
    assert len(counting.generated) == 2 * len(EXAMPLES) and counting.predicted == []
    family = _family(deps)
    assert family["champion"]["job_id"] == "job-2" and family["champion"]["endpoint"] == second
    assert [h["job_id"] for h in family["history"]] == ["job-1"]
    # The previous champion's endpoint is kept (the rollback target; idle, it costs nothing).
    old_model = _job(deps, "job-1")["model"]
    assert fake_endpoints(deps).get_endpoint(first).deployed_id_of(old_model) is not None
    assert fake_endpoints(deps).deploy_calls == 0


def test_a_worse_gemini_job_is_rejected_and_leaves_no_endpoint(deps: Dependencies) -> None:
    first = _gemini_job(deps, "job-1", 0.9)
    promote("job-1", deps)
    worse = _gemini_job(deps, "job-2", 0.4)
    outcome = promote("job-2", deps)
    assert outcome is not None and outcome.state is JobState.REJECTED
    assert "on the golden set" in str(outcome.reason)
    assert _gone(deps, worse)
    with pytest.raises(ObjectNotFoundError):
        fake_tuning(deps).generate(worse, EXAMPLES[0][0])
    assert list(fake_endpoints(deps).endpoints) == [first]
    record = _job(deps, "job-2")
    assert record["state"] == "REJECTED"
    assert GEMINI_REGISTRY_NOTE in record["promotion"]["notes"]
    assert "cannot be deleted" in GEMINI_REGISTRY_NOTE and "no inference cost" in (
        GEMINI_REGISTRY_NOTE
    )
    assert _family(deps)["champion"]["job_id"] == "job-1"


def test_a_gemini_job_whose_model_left_its_endpoint_is_rejected_and_the_endpoint_deleted(
    deps: Dependencies,
) -> None:
    endpoint = _gemini_job(deps, "job-1", 0.9)
    endpoints = fake_endpoints(deps)
    model = _job(deps, "job-1")["model"]
    endpoints.undeploy(endpoint, str(endpoints.get_endpoint(endpoint).deployed_id_of(model)))
    outcome = promote("job-1", deps)
    assert outcome is not None and outcome.state is JobState.REJECTED
    assert f"its tuning job deployed it on {endpoint}" in str(outcome.reason)
    assert _gone(deps, endpoint)


def test_the_canary_does_not_apply_to_a_gemini_candidate() -> None:
    deps = fake_dependencies(canary_percent=10)
    _gemini_job(deps, "job-1", 0.6)
    promote("job-1", deps)
    second = _gemini_job(deps, "job-2", 0.95)
    outcome = promote("job-2", deps)
    assert outcome is not None and outcome.state is JobState.PROMOTED
    decision = _job(deps, "job-2")["promotion"]
    assert decision["traffic_percent"] == 100
    [note] = decision["notes"]
    assert "DISTILLERY_CANARY_PERCENT=10 does not apply to the gemini backend" in note
    assert _family(deps)["champion"]["traffic_percent"] == 100
    model = _job(deps, "job-2")["model"]
    assert fake_endpoints(deps).serving(second) == {model.split("@")[0]: 100}


def test_a_pipeline_job_never_deploys_onto_a_gemini_champions_endpoint() -> None:
    deps = fake_dependencies(canary_percent=10)
    gemini = _gemini_job(deps, "job-1", 0.6)
    promote("job-1", deps)
    counting = AskedModels(deps)
    model = _pipeline_job(deps, "job-2", 0.95)
    outcome = promote("job-2", deps)
    assert outcome is not None and outcome.state is JobState.PROMOTED
    endpoints = fake_endpoints(deps)
    serving = str(outcome.endpoint)
    assert serving != gemini
    assert endpoints.get_endpoint(serving).display_name == f"{FAMILY}-serving"
    # All of the serving endpoint's traffic: the gemini champion shares no endpoint with it.
    assert endpoints.serving(serving) == {model: 100}
    gemini_model = _job(deps, "job-1")["model"].split("@")[0]
    assert endpoints.serving(gemini) == {gemini_model: 100}
    assert set(counting.generated) == {gemini} and set(counting.predicted) != {gemini}
    decision = _job(deps, "job-2")["promotion"]
    assert decision["traffic_percent"] == 100
    assert "does not apply: the champion is a tuned Gemini model" in decision["notes"][0]
    family = _family(deps)
    assert family["endpoint"] == serving and family["champion"]["backend"] == "pipeline"


def test_a_gemini_job_over_a_pipeline_champion_leaves_the_serving_endpoint(
    deps: Dependencies,
) -> None:
    old = _pipeline_job(deps, "job-1", 0.6)
    serving = str(promote("job-1", deps).endpoint)  # type: ignore[union-attr]
    endpoint = _gemini_job(deps, "job-2", 0.95)
    counting = AskedModels(deps)
    outcome = promote("job-2", deps)
    assert outcome is not None and outcome.state is JobState.PROMOTED
    assert outcome.endpoint == endpoint
    assert counting.predicted and set(counting.predicted) == {serving}
    assert set(counting.generated) == {endpoint}
    family = _family(deps)
    assert family["endpoint"] == serving  # the pipeline serving endpoint, untouched
    assert family["champion"]["endpoint"] == endpoint
    assert fake_endpoints(deps).serving(serving) == {old: 100}
    assert fake_endpoints(deps).deploy_calls == 1  # job-1's only


def test_a_gemini_champion_answers_a_new_golden_set_live(deps: Dependencies) -> None:
    endpoint = _gemini_job(deps, "job-1", 0.9)
    promote("job-1", deps)
    uri = write_eval_set(deps, BUCKET, EXAMPLES[:10])
    bucket, name = evaluation.split_gs(uri)
    from distillery.services.datasets import dataset_id

    info = deps.objects.stat(bucket, name)
    deps.records.set("datasets", dataset_id(bucket, name, info.generation), {"status": "valid"})
    counting = AskedModels(deps)
    family = replace_golden_set(FAMILY, uri, deps)
    assert counting.generated == [endpoint] * 10
    assert family["champion"]["golden_metrics"]["accuracy"] == 1.0
    golden = evaluation.load_golden(family["golden"], deps)
    fake_endpoints(deps).undeploy(
        endpoint,
        str(
            fake_endpoints(deps).get_endpoint(endpoint).deployed_id_of(family["champion"]["model"])
        ),
    )
    with pytest.raises(evaluation.GoldenSetError, match="no longer serves"):
        evaluation.champion_answers(family["champion"], "", golden, deps)


# --- redelivery after a crash at each step --------------------------------------------------


class _CrashAfter(InMemoryRecordStore):
    """Fails once, right after the first write that ``step`` matches (the write stands)."""

    def __init__(self, step: str, job_id: str) -> None:
        super().__init__()
        self.step = step
        self.job_id = job_id
        self.crashed = False

    def _matches(self, collection: str, doc: dict[str, Any]) -> bool:
        if collection == "models":
            return (
                self.step == "crowned" and (doc.get("champion") or {}).get("job_id") == self.job_id
            )
        if doc.get("job_id") != self.job_id:
            return False
        promotion = doc.get("promotion") or {}
        return {
            "evaluating": doc.get("state") == "EVALUATING",
            "decided": bool(promotion),
            "remembered": bool(promotion.get("endpoint")),
            "promoted": doc.get("state") == "PROMOTED",
            "rejected": doc.get("state") == "REJECTED",
        }.get(self.step, False)

    def transact(self, collection: str, doc_id: str, mutate: Mutation) -> dict[str, Any] | None:
        stored = super().transact(collection, doc_id, mutate)
        if stored is not None and not self.crashed and self._matches(collection, stored):
            self.crashed = True
            raise ContentionError(f"injected crash after the {self.step} write")
        return stored


def _crashing(step: str, job_id: str, **settings: Any) -> Dependencies:
    deps = fake_dependencies(**settings)
    deps.records = _CrashAfter(step, job_id)  # type: ignore[misc]
    return deps


@pytest.mark.parametrize("step", ["evaluating", "decided", "remembered", "crowned", "promoted"])
def test_a_gemini_promotion_converges_after_a_crash_at_each_step(step: str) -> None:
    deps = _crashing(step, "job-2")
    _gemini_job(deps, "job-1", 0.6)
    promote("job-1", deps)
    second = _gemini_job(deps, "job-2", 0.95)
    published = len(_announced(deps, "job-2"))
    with pytest.raises(ContentionError, match="injected"):
        promote("job-2", deps)
    assert deps.records.crashed  # type: ignore[attr-defined]
    first = promote("job-2", deps)
    again = promote("job-2", deps)
    assert first is not None and first.state is JobState.PROMOTED and first.endpoint == second
    assert again is not None and again.state is JobState.PROMOTED
    family = _family(deps)
    assert family["champion"]["job_id"] == "job-2" and family["champion"]["endpoint"] == second
    assert [h["job_id"] for h in family["history"]] == ["job-1"]  # crowned once
    assert "lease" not in family
    assert _announced(deps, "job-2")[published:] == ["EVALUATING", "PROMOTED"]
    assert fake_endpoints(deps).deploy_calls == 0
    assert not _gone(deps, second)


@pytest.mark.parametrize("step", ["evaluating", "decided", "rejected"])
def test_a_gemini_rejection_converges_after_a_crash_at_each_step(step: str) -> None:
    deps = _crashing(step, "job-2")
    _gemini_job(deps, "job-1", 0.9)
    promote("job-1", deps)
    worse = _gemini_job(deps, "job-2", 0.3)
    published = len(_announced(deps, "job-2"))
    with pytest.raises(ContentionError, match="injected"):
        promote("job-2", deps)
    outcome = promote("job-2", deps)
    promote("job-2", deps)
    assert outcome is not None and outcome.state is JobState.REJECTED
    assert _gone(deps, worse)
    assert _announced(deps, "job-2")[published:] == ["EVALUATING", "REJECTED"]
    assert _family(deps)["champion"]["job_id"] == "job-1"


def test_a_gemini_rejection_converges_after_a_crash_once_its_endpoint_is_deleted(
    deps: Dependencies,
) -> None:
    _gemini_job(deps, "job-1", 0.9)
    promote("job-1", deps)
    worse = _gemini_job(deps, "job-2", 0.3)
    endpoints = fake_endpoints(deps)
    real_delete = endpoints.delete_endpoint

    def delete_then_crash(name: str) -> None:
        real_delete(name)
        endpoints.delete_endpoint = real_delete  # type: ignore[method-assign]
        raise ConnectionError("crash after the endpoint was deleted")

    endpoints.delete_endpoint = delete_then_crash  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        promote("job-2", deps)
    assert _job(deps, "job-2")["state"] == "EVALUATING" and _gone(deps, worse)
    outcome = promote("job-2", deps)
    assert outcome is not None and outcome.state is JobState.REJECTED


# --- rollback -------------------------------------------------------------------------------


def test_rollback_of_a_gemini_champion_to_a_gemini_one_is_by_record(deps: Dependencies) -> None:
    first = _gemini_job(deps, "job-1", 0.6)
    promote("job-1", deps)
    second = _gemini_job(deps, "job-2", 0.95)
    promote("job-2", deps)
    endpoints = fake_endpoints(deps)
    before = {name: endpoints.serving(name) for name in endpoints.endpoints}
    published = len(_announced(deps, "job-2"))

    family = rollback(FAMILY, deps, from_job="job-2")
    assert family["champion"]["job_id"] == "job-1" and family["champion"]["endpoint"] == first
    assert family["champion"]["backend"] == "gemini" and family["history"] == []
    assert [r["job_id"] for r in family["rolled_back"]] == ["job-2"]
    # No traffic change on any endpoint; the rolled-back model's endpoint is kept.
    assert {name: endpoints.serving(name) for name in endpoints.endpoints} == before
    assert not _gone(deps, second) and endpoints.deploy_calls == 0
    job = _job(deps, "job-2")
    assert job["state"] == "ROLLED_BACK" and job["restored_job_id"] == "job-1"
    assert f"the model of job job-1 serves {first} again" in job["reason"]
    assert _announced(deps, "job-2")[published:] == ["ROLLED_BACK"]
    again = rollback(FAMILY, deps, from_job="job-2")  # repeated: changes nothing
    assert again["champion"]["job_id"] == "job-1"
    assert _announced(deps, "job-2")[published:] == ["ROLLED_BACK"]


def test_rollback_to_a_gemini_model_whose_endpoint_no_longer_serves_it_is_refused(
    deps: Dependencies,
) -> None:
    first = _gemini_job(deps, "job-1", 0.6)
    promote("job-1", deps)
    _gemini_job(deps, "job-2", 0.95)
    promote("job-2", deps)
    endpoints = fake_endpoints(deps)
    model = _job(deps, "job-1")["model"]
    endpoints.undeploy(first, str(endpoints.get_endpoint(first).deployed_id_of(model)))
    with pytest.raises(RollbackTargetGoneError, match=f"{first} no longer serves"):
        rollback(FAMILY, deps)
    endpoints.delete_endpoint(first)
    with pytest.raises(NothingToRollBackError, match="is gone"):
        rollback(FAMILY, deps)
    family = _family(deps)
    assert family["champion"]["job_id"] == "job-2" and "lease" not in family
    assert _job(deps, "job-2")["state"] == "PROMOTED"


def test_rollback_from_a_gemini_champion_to_a_pipeline_one_restores_the_serving_endpoint(
    deps: Dependencies,
) -> None:
    old = _pipeline_job(deps, "job-1", 0.6)
    serving = str(promote("job-1", deps).endpoint)  # type: ignore[union-attr]
    gemini = _gemini_job(deps, "job-2", 0.95)
    promote("job-2", deps)
    endpoints = fake_endpoints(deps)
    # The serving endpoint's traffic moved meanwhile: the rollback gives it back to job-1.
    info = endpoints.get_endpoint(serving)
    other = endpoints.add_model("m-other", FAMILY)
    endpoints.deploy(serving, other, 50, info.deployed_id_of(old))

    family = rollback(FAMILY, deps, from_job="job-2")
    assert family["champion"]["job_id"] == "job-1" and family["champion"]["endpoint"] == serving
    assert endpoints.serving(serving) == {old: 100}
    gemini_model = _job(deps, "job-2")["model"].split("@")[0]
    assert endpoints.serving(gemini) == {gemini_model: 100}  # kept, untouched
    job = _job(deps, "job-2")
    assert job["state"] == "ROLLED_BACK"
    assert f"the model of job job-1 serves {serving} again" in job["reason"]


def test_rollback_from_a_pipeline_champion_to_a_gemini_one_is_by_record(
    deps: Dependencies,
) -> None:
    gemini = _gemini_job(deps, "job-1", 0.6)
    promote("job-1", deps)
    new = _pipeline_job(deps, "job-2", 0.95)
    serving = str(promote("job-2", deps).endpoint)  # type: ignore[union-attr]
    endpoints = fake_endpoints(deps)
    assert endpoints.serving(serving) == {new: 100}
    before = {name: endpoints.serving(name) for name in endpoints.endpoints if name != serving}

    family = rollback(FAMILY, deps, from_job="job-2")
    assert family["champion"]["job_id"] == "job-1" and family["champion"]["endpoint"] == gemini
    assert family["endpoint"] == serving  # the pipeline serving endpoint stays the family's
    # ... empty: nothing is left billing there, and no other endpoint's traffic changed.
    assert endpoints.get_endpoint(serving).deployed_models == ()
    after = {name: endpoints.serving(name) for name in endpoints.endpoints if name != serving}
    assert after == before
    assert _job(deps, "job-2")["state"] == "ROLLED_BACK"
    # The next pipeline job deploys on the serving endpoint, judged against the gemini champion.
    third = _pipeline_job(deps, "job-3", 1.0)
    outcome = promote("job-3", deps)
    assert outcome is not None and outcome.state is JobState.PROMOTED
    assert outcome.endpoint == serving and endpoints.serving(serving) == {third: 100}


def test_a_gemini_champion_without_backend_defaults_to_pipeline() -> None:
    assert evaluation.backend_of({"job_id": "old", "endpoint": "e"}) == "pipeline"
    assert evaluation.backend_of(None) == "pipeline"
    assert evaluation.backend_of({"backend": "gemini"}) == "gemini"
    assert evaluation.backend_of({"spec": {"backend": "gemini"}}) == "gemini"
    doc = {"champion": {"backend": "gemini", "endpoint": "g"}}
    assert evaluation.pipeline_serving(doc) is None
    assert evaluation.pipeline_serving({"champion": {"endpoint": "s"}}) == "s"
    assert evaluation.pipeline_serving({**doc, "endpoint": "s"}) == "s"


def test_fake_dependencies_share_the_endpoints_between_the_two_fakes() -> None:
    deps = fake_dependencies()
    assert fake_tuning(deps).endpoints is fake_endpoints(deps)
    assert fake_tuning(deps).project == PROJECT


def test_reconcile_finishes_a_gemini_promotion(deps: Dependencies) -> None:
    from distillery.services.promoter import finish_promotions

    endpoint = _gemini_job(deps, "job-1", 0.9)
    finished = finish_promotions(deps)
    assert finished.moved == ["job-1"] and finished.errors == {}
    assert _job(deps, "job-1")["endpoint"] == endpoint
    assert _family(deps)["champion"]["endpoint"] == endpoint


def test_a_gemini_decision_whose_champion_changed_is_made_again_and_its_endpoint_deleted() -> None:
    deps = _crashing("remembered", "job-2")
    _gemini_job(deps, "job-1", 0.6)
    promote("job-1", deps)
    late = _gemini_job(deps, "job-2", 0.8)
    with pytest.raises(ContentionError, match="injected"):
        promote("job-2", deps)  # decided against job-1, crashed before it was crowned
    assert _job(deps, "job-2")["promotion"]["champion"]["job_id"] == "job-1"
    best = _gemini_job(deps, "job-3", 1.0)
    assert promote("job-3", deps).state is JobState.PROMOTED  # type: ignore[union-attr]

    outcome = promote("job-2", deps)
    assert outcome is not None and outcome.state is JobState.REJECTED
    promotion = _job(deps, "job-2")["promotion"]
    assert promotion["decided_again"]["champion_was"] == "job-1"
    assert promotion["champion"]["job_id"] == "job-3"
    assert _gone(deps, late) and not _gone(deps, best)
    family = _family(deps)
    assert family["champion"]["job_id"] == "job-3"
    assert [h["job_id"] for h in family["history"]] == ["job-1"]


def test_asking_a_gemini_model_counts_refusals_and_retries_what_did_not_answer(
    deps: Dependencies, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distillery.core.errors import ServiceUnavailableError

    endpoint = _gemini_job(deps, "job-1", 1.0)
    tuning = fake_tuning(deps)
    real_generate = tuning.generate
    calls: list[str] = []

    def flaky(where: str, prompt: str) -> str:
        calls.append(prompt)
        if prompt == EXAMPLES[0][0]:
            raise RequestRejectedError("blocked: SAFETY")
        if prompt == EXAMPLES[1][0] and calls.count(prompt) == 1:
            raise ServiceUnavailableError("try again")
        return real_generate(where, prompt)

    monkeypatch.setattr(tuning, "generate", flaky)
    monkeypatch.setattr(evaluation.time, "sleep", lambda seconds: None)
    prompts = [p for p, _ in EXAMPLES[:3]]
    answers = evaluation.ask(endpoint, prompts, deps, backend="gemini")
    assert answers.texts == (None, EXAMPLES[1][1], EXAMPLES[2][1])
    assert answers.error_count == 1 and answers.errors == ("blocked: SAFETY",)
    assert calls.count(EXAMPLES[1][0]) == 2

    def silent(where: str, prompt: str) -> str:
        raise ServiceUnavailableError("the service did not answer")

    monkeypatch.setattr(tuning, "generate", silent)
    with pytest.raises(ServiceUnavailableError):
        evaluation.ask(endpoint, prompts[:1], deps, backend="gemini")


def test_a_promote_decision_whose_endpoint_vanished_before_the_crowning_is_rejected() -> None:
    deps = _crashing("decided", "job-2")
    _gemini_job(deps, "job-1", 0.6)
    promote("job-1", deps)
    second = _gemini_job(deps, "job-2", 0.95)
    with pytest.raises(ContentionError, match="injected"):
        promote("job-2", deps)  # decided "promote", then the delivery died
    assert _job(deps, "job-2")["promotion"]["decision"] == "promote"
    endpoints = fake_endpoints(deps)
    [deployed] = endpoints.get_endpoint(second).deployed_models
    endpoints.undeploy(second, deployed.deployed_model_id)
    endpoints.delete_endpoint(second)  # someone deleted the candidate's endpoint meanwhile

    outcome = promote("job-2", deps)

    assert outcome is not None and outcome.state is JobState.REJECTED
    assert outcome.reason is not None and f"the endpoint {second}" in outcome.reason
    record = _job(deps, "job-2")
    assert record["state"] == "REJECTED" and record["promotion"]["decision"] == "reject"
    assert _family(deps)["champion"]["job_id"] == "job-1"  # the champion is untouched
    again = promote("job-2", deps)
    assert again is not None and again.state is JobState.REJECTED
