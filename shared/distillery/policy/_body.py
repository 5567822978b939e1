"""The ``pipelineJobs.create`` body of a resolved job (SPEC "The job request")."""

from __future__ import annotations

from typing import Any

from distillery.policy._model import JobSpec


def build_request_body(spec: JobSpec) -> dict[str, Any]:
    """The ``pipelineJobs.create`` body of ``spec``: only the parameters that apply are sent."""
    parameters: dict[str, Any] = {
        "project": spec.project,
        "model_display_name": spec.model_display_name,
        "dataset_uri": spec.dataset_uri,
        "location": spec.model_upload_region,
        "accelerator_type": spec.accelerator_type,
        "teacher_model_reference": spec.teacher_model_reference,
        "student_model_reference": spec.student_model_reference,
        "train_steps": spec.train_steps,
        "learning_rate_multiplier": spec.learning_rate_multiplier,
    }
    # No eval parameter without eval data, no CMEK where it cannot apply (SPEC).
    if spec.evaluation_data_uri is not None:
        parameters["evaluation_data_uri"] = spec.evaluation_data_uri
        parameters["evaluation_interval"] = spec.evaluation_interval
        parameters["enable_early_stopping"] = spec.enable_early_stopping
        parameters["enable_checkpoint_selection"] = spec.enable_checkpoint_selection
    if spec.tensorboard_resource_id is not None:
        parameters["tensorboard_resource_id"] = spec.tensorboard_resource_id
    if spec.cmek_key is not None:
        parameters["encryption_spec_key_name"] = spec.cmek_key
    body: dict[str, Any] = {
        "displayName": spec.display_name,
        "runtimeConfig": {
            "gcsOutputDirectory": spec.output_directory,
            "parameterValues": parameters,
        },
    }
    if spec.cmek_key is not None:
        body["encryptionSpec"] = {"kmsKeyName": spec.cmek_key}
    if spec.service_account is not None:
        body["serviceAccount"] = spec.service_account
    body["templateUri"] = spec.template_uri
    return body
