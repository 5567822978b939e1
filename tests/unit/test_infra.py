"""The Terraform in infra/ deploys what the code uses.

A contract test, read with python-hcl2 (no provider, no network): every topic, collection, bucket
prefix and environment variable of :mod:`distillery.core.settings`, every entry point of
``functions/main.py`` and every trigger of :data:`distillery.local.stack.routes.ROUTES` is the one
infra defines. ``terraform fmt`` runs when a terraform binary is installed (an optional tool: the
test says why it skips); ``terraform validate`` cannot run offline (it needs the google provider
from the Terraform registry), see README "Deployment".
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest

from distillery.core.settings import DATA_RESIDENCY_AREAS, ENVIRONMENT, Settings
from distillery.facts import GEMINI_TUNING_REGIONS, SUPPORTED_REGIONS
from distillery.local.stack.control import StackConfig
from distillery.local.stack.routes import (
    DEAD_LETTER_SUFFIX,
    MESSAGE_PUBLISHED,
    PRODUCT_TOPIC_SETTINGS,
    ROUTES,
    STORAGE_FINALIZED,
    MessagePublished,
    StorageFinalized,
)
from distillery.reports import decision_report_paths
from distillery.services.evaluation import GOLDEN_PREFIX
from distillery.services.status import PIPELINE_RESOURCE_TYPE

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
MAIN = REPO / "functions" / "main.py"
README = REPO / "README.md"

#: Settings the functions read that infra deliberately leaves unset, and why (functions.tf says
#: so next to local.function_environment).
NOT_SET_IN_PRODUCTION = {
    "DISTILLERY_VERTEX_API_ENDPOINT": "the local Vertex AI API's URL; production uses Google's",
}

#: Environment variables whose value is not a variable of the same name, and what it is instead.
DERIVED = {
    "GOOGLE_CLOUD_PROJECT": "${var.project}",
    "DISTILLERY_BUCKET": "${local.datasets_bucket_name}",
    "DISTILLERY_SERVICE_ACCOUNT": "${local.pipeline_service_email}",
}

#: Settings fields whose Terraform variable has another name (region is the deployment's region).
RENAMED = {"region": "vertex_region"}

#: The local stack's trigger classes → the trigger kind of local.function_catalog.
TRIGGER_KINDS = {
    StorageFinalized.__name__: "storage",
    MessagePublished.__name__: "pubsub",
    "Scheduled": "schedule",  # Cloud Scheduler in production
}

_VAR = re.compile(r"^\$\{(?:tostring\()?var\.(\w+)\)?\}$")


@dataclasses.dataclass
class Infra:
    """All of infra/*.tf, merged by block kind."""

    variables: dict[str, dict[str, Any]]
    locals: dict[str, Any]
    resources: dict[str, dict[str, dict[str, Any]]]
    text: dict[str, str]


@cache
def infra() -> Infra:
    options = hcl2.SerializationOptions(
        with_comments=False, explicit_blocks=False, strip_string_quotes=True
    )
    variables: dict[str, dict[str, Any]] = {}
    local_values: dict[str, Any] = {}
    resources: dict[str, dict[str, dict[str, Any]]] = {}
    text: dict[str, str] = {}
    for path in sorted(INFRA.glob("*.tf")):
        text[path.name] = path.read_text(encoding="utf-8")
        parsed = hcl2.loads(text[path.name], serialization_options=options)
        for block in parsed.get("variable", []):
            variables.update(block)
        for block in parsed.get("locals", []):
            local_values.update(block)
        for block in parsed.get("resource", []):
            for kind, named in block.items():
                resources.setdefault(kind, {}).update(named)
    return Infra(variables, local_values, resources, text)


def default(variable: str) -> Any:
    return infra().variables[variable]["default"]


def main_py_functions() -> dict[str, str]:
    """main.py's entry points → their functions_framework decorator (cloud_event or http)."""
    found = {}
    for node in ast.parse(MAIN.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if (
                    isinstance(decorator, ast.Attribute)
                    and isinstance(decorator.value, ast.Name)
                    and decorator.value.id == "functions_framework"
                ):
                    found[node.name] = decorator.attr
    return found


def quoted_strings(expression: str) -> set[str]:
    return set(re.findall(r'"([^"]*)"', expression))


# --- Environment -----------------------------------------------------------------------------


def test_infra_environment_sets_every_setting_or_says_why_not() -> None:
    environment = infra().locals["function_environment"]
    assert set(environment) == set(ENVIRONMENT) - set(NOT_SET_IN_PRODUCTION)
    for name in NOT_SET_IN_PRODUCTION:
        assert name in infra().text["functions.tf"], f"functions.tf must say why {name} is unset"


def test_infra_environment_variables_have_the_settings_names_and_defaults() -> None:
    settings = Settings()
    for name, value in infra().locals["function_environment"].items():
        if name in DERIVED:
            assert value == DERIVED[name]
            continue
        match = _VAR.match(value)
        assert match, f"{name} = {value!r} is not a variable"
        field = ENVIRONMENT[name]
        variable = match.group(1)
        assert variable == RENAMED.get(field, field), f"{name} comes from var.{variable}"
        expected = getattr(settings, field)
        actual = default(variable)
        if isinstance(expected, bool):
            assert actual is expected, name
        elif isinstance(expected, int | float):
            assert float(actual) == float(expected), name
        else:
            assert actual == expected, name


def test_infra_project_has_no_default() -> None:
    # Settings requires GOOGLE_CLOUD_PROJECT; so does the deployment.
    assert "default" not in infra().variables["project"]


def test_infra_every_function_gets_the_environment() -> None:
    function = infra().resources["google_cloudfunctions2_function"]["function"]
    assert function["service_config"][0]["environment_variables"] == "${local.function_environment}"


def test_infra_region_validations_match_settings() -> None:
    validations = infra().variables["vertex_region"]["validation"]
    # Every region Settings accepts for DISTILLERY_REGION under either backend.
    known = {*Settings(backend="gemini").known_regions, *Settings(backend="pipeline").known_regions}
    assert quoted_strings(validations[0]["condition"]) == known
    assert set(SUPPORTED_REGIONS) <= known and set(GEMINI_TUNING_REGIONS) <= known
    residency = infra().variables["data_residency"]["validation"][0]["condition"]
    assert quoted_strings(residency) == {"", *DATA_RESIDENCY_AREAS}


# --- Topics, dead letters, bucket layout -----------------------------------------------------


def test_infra_topics_are_the_settings_topics() -> None:
    topics = infra().locals["product_topics"]
    assert sorted(topics.values()) == sorted(f"${{var.{s}}}" for s in PRODUCT_TOPIC_SETTINGS)
    product = infra().resources["google_pubsub_topic"]["product"]
    assert product["for_each"] == "${local.product_topics}"


def test_infra_dead_letter_topics_follow_the_naming_rule() -> None:
    expression = infra().locals["dead_letter_topics"]
    assert f"${{topic}}{DEAD_LETTER_SUFFIX}" in expression
    assert "local.product_topics" in expression
    assert default("storage_events_dead_letter_topic").endswith(DEAD_LETTER_SUFFIX)
    # Every dead-letter topic keeps its messages in a pull subscription.
    subscription = infra().resources["google_pubsub_subscription"]["dead_letter"]
    assert subscription["for_each"] == "${local.dead_letter_topics}"


def test_infra_delivery_attempts_match_the_local_stack() -> None:
    local_attempts = {f.name: f.default for f in dataclasses.fields(StackConfig)}
    assert default("max_delivery_attempts") == local_attempts["max_delivery_attempts"]


def test_infra_documents_the_bucket_layout() -> None:
    layout = infra().text["storage.tf"]
    settings = Settings()
    for field in ("datasets_prefix", "validated_prefix", "reports_prefix", "pipeline_root_prefix"):
        assert f"#   {getattr(settings, field)}" in layout, field


def test_infra_bucket_is_private_and_uniform() -> None:
    bucket = infra().resources["google_storage_bucket"]["datasets"]
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert bucket["force_destroy"] == "${var.bucket_force_destroy}"
    assert default("bucket_force_destroy") is False


# --- Functions and triggers ------------------------------------------------------------------


def test_infra_functions_are_main_py_entry_points() -> None:
    catalog = infra().locals["function_catalog"]
    entry_points = main_py_functions()
    assert set(entry_points) <= set(catalog), "a function in main.py is not defined in infra"
    enabled = {name for name, options in default("functions").items() if options["enabled"]}
    assert enabled == set(entry_points), (
        "infra/variables.tf must enable by default exactly the functions main.py defines"
    )
    # var.functions only accepts catalog keys.
    validation = infra().variables["functions"]["validation"][0]["condition"]
    assert quoted_strings(validation) == set(catalog)
    function = infra().resources["google_cloudfunctions2_function"]["function"]
    assert function["for_each"] == "${local.enabled_functions}"
    assert function["build_config"][0]["entry_point"] == "${each.key}"


def test_infra_triggers_match_the_local_routes() -> None:
    catalog = infra().locals["function_catalog"]
    topics = infra().locals["product_topics"]
    for route in ROUTES:
        entry = catalog[route.target]
        kind = TRIGGER_KINDS.get(type(route.trigger).__name__)
        assert kind is not None, f"infra has no trigger kind for {route.trigger!r}"
        assert entry["trigger"] == kind, route.target
        if isinstance(route.trigger, MessagePublished):
            assert topics[entry["topic"]] == f"${{var.{route.trigger.topic_setting}}}"
    event_types = infra().locals["event_types"]
    assert event_types == {"storage": STORAGE_FINALIZED, "pubsub": MESSAGE_PUBLISHED}


def test_infra_http_functions_are_scheduled() -> None:
    catalog = infra().locals["function_catalog"]
    for name, kind in main_py_functions().items():
        expected = "schedule" if kind == "http" else {"storage", "pubsub"}
        if kind == "http":
            assert catalog[name]["trigger"] == expected, name
        else:
            assert catalog[name]["trigger"] in expected, name


def test_infra_event_triggers_retry_and_filter_the_bucket() -> None:
    function = infra().resources["google_cloudfunctions2_function"]["function"]
    trigger = function["dynamic"][0]["event_trigger"]["content"][0]
    assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
    assert trigger["trigger_region"] == "${var.region}"
    event_filter = trigger["dynamic"][0]["event_filters"]
    assert event_filter["content"][0]["attribute"] == "bucket"
    assert "google_storage_bucket.datasets.name" in event_filter["for_each"]


def test_infra_logging_sink_feeds_the_job_events_topic() -> None:
    sink = infra().resources["google_logging_project_sink"]["pipeline_states"]
    assert f'resource.type="{PIPELINE_RESOURCE_TYPE}"' in sink["filter"]
    assert "jsonPayload.state" in sink["filter"]
    assert 'google_pubsub_topic.product["job_events"]' in sink["destination"]
    assert sink["unique_writer_identity"] is True
    grant = infra().resources["google_pubsub_topic_iam_member"]["sink_publisher"]
    assert grant["member"] == "${google_logging_project_sink.pipeline_states.writer_identity}"


def test_infra_google_provider_is_pinned_to_one_major_version() -> None:
    versions = infra().text["versions.tf"]
    assert re.search(r'version\s*=\s*">= 7\.\d+\.\d+, < 8\.0\.0"', versions)


# --- Documentation ---------------------------------------------------------------------------


def test_readme_deployment_lists_each_function_account_and_its_roles() -> None:
    readme = README.read_text(encoding="utf-8")
    deployment = readme.split("\n## Deployment\n", 1)[1].split("\n## ", 1)[0]
    section = deployment.split("\n### Service accounts and roles\n", 1)[1].split("\n### ", 1)[0]
    rows = {}
    for line in section.splitlines():
        first = re.match(r"\| `(\w+)`", line)
        if first:
            rows[first.group(1)] = line
    for name, entry in infra().locals["function_catalog"].items():
        row = rows.get(name)
        assert row is not None, f"README Deployment has no row for {name}"
        for role in entry["project_roles"]:
            assert role.removeprefix("roles/") in row, (name, role)
        for grant in entry["bucket_roles"]:
            assert grant["role"].removeprefix("roles/") in row, (name, grant["role"])


# --- terraform fmt (optional tool) -----------------------------------------------------------


def test_infra_is_terraform_fmt_clean() -> None:
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed (optional tool): fmt not checked")
    environ = {k: v for k, v in os.environ.items() if k != "TF_CLI_CONFIG_FILE"}
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(INFRA)],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_infra_promoter_reads_the_golden_set_and_writes_where_the_evaluation_does() -> None:
    catalog = infra().locals["function_catalog"]
    grants = {(g["role"], g["prefix"]) for g in catalog["promote_model"]["bucket_roles"]}
    # The golden set may be beside the dataset (datasets/) or the validated eval set.
    assert ("roles/storage.objectViewer", "") in grants
    assert ("roles/storage.objectCreator", GOLDEN_PREFIX) in grants
    assert ("roles/storage.objectUser", "${var.reports_prefix}decisions/") in grants
    json_name, html_name = decision_report_paths("j-1", Settings().reports_prefix)
    for name in (json_name, html_name):
        assert name.startswith(f"{Settings().reports_prefix}decisions/"), name
