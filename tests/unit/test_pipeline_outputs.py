from __future__ import annotations

from distillery.core.pipeline_outputs import read_outputs, read_progress
from distillery.core.ports import PipelineJobInfo

RESOURCE = {
    "name": "projects/p/locations/us-central1/pipelineJobs/j",
    "jobDetail": {
        "taskDetails": [
            {"taskName": "prepare-data", "state": "SUCCEEDED"},
            {
                "taskName": "distillation-trainer",
                "execution": {
                    "metadata": {
                        "input:train_steps": 300,
                        "progress:step": 300,
                        "progress:phase": "done",
                    }
                },
                "outputs": {
                    "metrics": {
                        "artifacts": [
                            {
                                "schemaTitle": "system.Metrics",
                                "metadata": {
                                    "train_total_loss": 0.12,
                                    "eval_fraction_of_correct_next_step_preds": 0.97,
                                    "eval_num_predictions": 400,
                                    "note": "not a number",
                                },
                            }
                        ]
                    },
                    "model": {"artifacts": [{"schemaTitle": "system.Model", "uri": "gs://b/m/"}]},
                },
            },
            {
                "taskName": "upload-llm-model",
                "execution": {
                    "metadata": {"output:model_resource_name": "projects/p/locations/l/models/7"}
                },
            },
        ]
    },
}


def test_read_outputs_finds_the_model_and_takes_no_metrics_from_a_metrics_artifact() -> None:
    # The real tuning pipelines publish no system.Metrics artifact: metrics come only from the
    # TensorBoard event files (distillery.core.training_metrics), never from one that appears.
    info = PipelineJobInfo(RESOURCE["name"], "PIPELINE_STATE_SUCCEEDED", resource=RESOURCE)
    assert read_outputs(info) == {"model": "projects/p/locations/l/models/7"}


def test_read_outputs_of_a_job_without_details_is_empty() -> None:
    assert read_outputs(PipelineJobInfo("n", "PIPELINE_STATE_FAILED", resource={})) == {}


def test_read_progress_strips_the_prefix() -> None:
    info = PipelineJobInfo(RESOURCE["name"], "PIPELINE_STATE_RUNNING", resource=RESOURCE)
    assert read_progress(info) == {"step": 300, "phase": "done"}
