"""Model resource names with ``@VERSION``: :func:`same_model` and ``EndpointInfo.deployed_id_of``.

The local Vertex AI API gives every model a version id (``"1"``) and names the pipeline's model
``models/M@1``; the real ``deployedModels[].model`` may carry the version or not. Every comparison
of model names goes through :func:`~distillery.core.ports.same_model`.
"""

from __future__ import annotations

import pytest

from distillery.core.ports import (
    DeployedModelInfo,
    EndpointInfo,
    same_model,
    split_model_version,
)

M = "projects/p/locations/us-central1/models/123"
OTHER = "projects/p/locations/us-central1/models/456"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (M, M),
        (M, f"{M}@1"),
        (f"{M}@1", M),
        (M, f"{M}@default"),
        (f"{M}@default", f"{M}@1"),
        (f"{M}@2", f"{M}@2"),
        (f"{M}@golden", f"{M}@golden"),
    ],
)
def test_same_model_ignores_a_version_that_names_the_same_one(a: str, b: str) -> None:
    assert same_model(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (M, OTHER),
        (f"{M}@1", f"{OTHER}@1"),
        (f"{M}@1", f"{M}@2"),
        (M, f"{M}@2"),
        (f"{M}@default", f"{M}@2"),
        (M, f"{M}0"),  # a longer id is another model, not a version
    ],
)
def test_same_model_tells_other_models_and_versions_apart(a: str, b: str) -> None:
    assert not same_model(a, b)


def test_split_model_version_defaults_to_the_default_alias() -> None:
    assert split_model_version(M) == (M, "default")
    assert split_model_version(f"{M}@1") == (M, "1")
    assert split_model_version(f"{M}@") == (M, "default")


def test_deployed_id_of_copes_with_versions_on_either_side() -> None:
    endpoint = EndpointInfo(
        name="projects/p/locations/us-central1/endpoints/9",
        display_name="news",
        deployed_models=(DeployedModelInfo("d1", f"{M}@1"), DeployedModelInfo("d2", OTHER)),
        traffic_split={"d1": 100},
    )

    assert endpoint.deployed_id_of(M) == "d1"
    assert endpoint.deployed_id_of(f"{M}@1") == "d1"
    assert endpoint.deployed_id_of(f"{M}@default") == "d1"
    assert endpoint.deployed_id_of(f"{OTHER}@1") == "d2"
    assert endpoint.deployed_id_of(f"{M}@2") is None
    assert endpoint.deployed_id_of("projects/p/locations/us-central1/models/789") is None
