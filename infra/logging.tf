# Vertex AI pipeline state changes → distill-job-events (SPEC.md "After the job"): a project sink
# on the PipelineJob resource's log entries that carry a state.
resource "google_logging_project_sink" "pipeline_states" {
  name        = "distillery-pipeline-states"
  project     = var.project
  description = "PipelineJob state changes for track_status (ARCHITECTURE.md: JobEvent)."
  destination = "pubsub.googleapis.com/${google_pubsub_topic.product["job_events"].id}"
  filter      = "resource.type=\"aiplatform.googleapis.com/PipelineJob\" AND jsonPayload.state:*"

  # The sink writes as its own service agent, granted on this one topic below.
  unique_writer_identity = true
}

resource "google_pubsub_topic_iam_member" "sink_publisher" {
  project = var.project
  topic   = google_pubsub_topic.product["job_events"].name
  role    = "roles/pubsub.publisher"
  member  = google_logging_project_sink.pipeline_states.writer_identity
}
