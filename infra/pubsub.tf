# The product's topics (ARCHITECTURE.md), their dead-letter topics, and where dead letters wait.
#
# No subscription here feeds a function: each Pub/Sub-triggered function's Eventarc trigger
# creates and owns its push subscription (and the storage trigger its transport topic as well).
# Their dead-letter policy is attached after deployment (dead_letter.tf), because neither the
# google provider nor the Cloud Functions API exposes that subscription's settings.

locals {
  product_topics = {
    launch     = var.launch_topic
    job_events = var.job_events_topic
    status     = var.status_topic
  }

  # Dead-letter topic of each event trigger's subscription: <topic>-dlq for the product topics,
  # a named one for the storage trigger (its transport topic is Eventarc's own).
  dead_letter_topics = merge(
    { for key, topic in local.product_topics : key => "${topic}-dlq" },
    { storage = var.storage_events_dead_letter_topic },
  )
}

resource "google_pubsub_topic" "product" {
  #checkov:skip=CKV_GCP_83:Carries only identifiers, URIs and states, never dataset contents; encrypted at rest with Google-managed keys (the CMEK variable protects the datasets bucket and the pipeline jobs).
  for_each = local.product_topics

  name    = each.value
  project = var.project
  labels  = var.labels

  # Keep a week of messages so a subscription created later (or a seek) can replay them.
  message_retention_duration = "604800s"

  depends_on = [google_project_service.required]
}

resource "google_pubsub_topic" "dead_letter" {
  #checkov:skip=CKV_GCP_83:Holds only events that failed delivery (identifiers, URIs, states), encrypted at rest with Google-managed keys.
  for_each = local.dead_letter_topics

  name    = each.value
  project = var.project
  labels  = var.labels

  depends_on = [google_project_service.required]
}

# Messages published to a topic without subscriptions are dropped: every dead-letter topic gets a
# pull subscription that keeps what lands there for inspection and replay (README, Deployment).
resource "google_pubsub_subscription" "dead_letter" {
  for_each = local.dead_letter_topics

  name    = "${each.value}-pull"
  project = var.project
  topic   = google_pubsub_topic.dead_letter[each.key].id
  labels  = var.labels

  message_retention_duration = var.dead_letter_retention
  retain_acked_messages      = false
  ack_deadline_seconds       = 60

  # Never expire for inactivity: a quiet dead-letter queue is the normal case.
  expiration_policy {
    ttl = ""
  }
}

# Pub/Sub's service agent forwards undeliverable messages: it publishes to each dead-letter topic
# (and, on the trigger subscriptions, acknowledges them: dead_letter.tf).
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.dead_letter_topics

  project = var.project
  topic   = google_pubsub_topic.dead_letter[each.key].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${local.pubsub_service_agent}"
}
