output "datasets_bucket" {
  description = "The datasets bucket (DISTILLERY_BUCKET): upload to gs://<bucket>/datasets/."
  value       = google_storage_bucket.datasets.name
}

output "bucket_prefixes" {
  description = "The bucket layout the functions use."
  value = {
    datasets      = var.datasets_prefix
    validated     = var.validated_prefix
    reports       = var.reports_prefix
    pipeline_root = var.pipeline_root_prefix
  }
}

output "source_bucket" {
  description = "The bucket holding the functions' source archives."
  value       = google_storage_bucket.source.name
}

output "topics" {
  description = "The product's topics: publish LaunchRequests on launch, subscribe to status."
  value       = { for key, topic in google_pubsub_topic.product : key => topic.name }
}

output "dead_letter_topics" {
  description = "Dead-letter topic of each event trigger, and the pull subscription that keeps its messages."
  value = {
    for key, topic in google_pubsub_topic.dead_letter : key => {
      topic        = topic.name
      subscription = google_pubsub_subscription.dead_letter[key].name
    }
  }
}

output "functions" {
  description = "Each deployed function: its name, URI and Eventarc trigger."
  value = {
    for key, fn in google_cloudfunctions2_function.function : key => {
      name    = fn.name
      uri     = fn.service_config[0].uri
      trigger = length(fn.event_trigger) > 0 ? fn.event_trigger[0].trigger : null
    }
  }
}

output "service_accounts" {
  description = "The service accounts: one per function, and those of the triggers, builds, pipeline jobs and scheduler."
  value = merge(
    { for key, account in google_service_account.function : key => account.email },
    {
      eventarc_trigger = google_service_account.trigger.email
      build            = google_service_account.build.email
      pipeline_jobs    = local.pipeline_service_email
      scheduler        = one(google_service_account.scheduler[*].email)
    },
  )
}

output "logging_sink_writer_identity" {
  description = "The identity the PipelineJob state sink publishes to the job events topic as."
  value       = google_logging_project_sink.pipeline_states.writer_identity
}

output "firestore_database" {
  description = "The Firestore database the functions use."
  value       = google_firestore_database.default.name
}

output "function_environment" {
  description = "The environment every function gets (distillery.core.settings)."
  value       = local.function_environment
}
