# reconcile runs on a schedule: Cloud Scheduler POSTs to the function with an OIDC token of its
# own account (the only invoker of that function). A missed or failed run is retried here, and
# the next run polls again anyway, so it needs no dead-letter topic.
resource "google_cloud_scheduler_job" "reconcile" {
  count = contains(keys(local.enabled_functions), "reconcile") ? 1 : 0

  name        = "distillery-reconcile"
  project     = var.project
  region      = var.region
  description = "Polls Vertex AI for job states the logging sink did not deliver."
  schedule    = var.reconcile_schedule
  time_zone   = var.reconcile_time_zone
  # At most the function's timeout (HTTP targets allow 15 s to 30 min).
  attempt_deadline = "${min(local.enabled_functions["reconcile"].timeout_seconds, 1800)}s"

  retry_config {
    retry_count          = 3
    min_backoff_duration = "30s"
    max_backoff_duration = "300s"
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.function["reconcile"].service_config[0].uri
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.scheduler[0].email
      audience              = google_cloudfunctions2_function.function["reconcile"].service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.scheduler_invoker]
}

# poll_tuning_jobs runs every minute the same way: tuning jobs (the gemini backend) announce no
# state changes, so this is how their jobs move. A missed run is made up by the next one.
resource "google_cloud_scheduler_job" "poll_tuning_jobs" {
  count = contains(keys(local.enabled_functions), "poll_tuning_jobs") ? 1 : 0

  name        = "distillery-poll-tuning-jobs"
  project     = var.project
  region      = var.region
  description = "Polls the tuning jobs of active gemini jobs."
  schedule    = var.poll_tuning_jobs_schedule
  time_zone   = var.reconcile_time_zone
  # At most the function's timeout (HTTP targets allow 15 s to 30 min).
  attempt_deadline = "${max(15, min(local.enabled_functions["poll_tuning_jobs"].timeout_seconds, 1800))}s"

  retry_config {
    retry_count = 0 # the next minute's run polls again
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.function["poll_tuning_jobs"].service_config[0].uri
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.scheduler[0].email
      audience              = google_cloudfunctions2_function.function["poll_tuning_jobs"].service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.scheduler_poll_invoker]
}
