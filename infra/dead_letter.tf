# Dead-lettering for the event-triggered functions.
#
# Each Eventarc trigger delivers through a push subscription it creates and owns (for the storage
# trigger, on a transport topic it creates too). Neither google_cloudfunctions2_function nor the
# Cloud Functions API exposes that subscription's dead-letter policy (provider issues #17697,
# #25069), and a second subscription of our own on the topic would deliver every event twice,
# outside Eventarc. So, once the function (and with it the trigger) exists, this attaches the
# policy to Eventarc's subscription with gcloud: after var.max_delivery_attempts failed
# deliveries (retried with Pub/Sub's exponential backoff, since retry_policy is RETRY) the event
# moves to its dead-letter topic, where a pull subscription keeps it (pubsub.tf).
#
# It runs again whenever the trigger or the deployed code changes (a redeploy may recreate the
# subscription). Set attach_dead_letter_policies = false where Terraform runs without gcloud, and
# run infra/scripts/attach-dead-letter.sh by hand with the same variables.
resource "terraform_data" "dead_letter_policy" {
  for_each = {
    for name, fn in local.enabled_functions : name => fn
    if var.attach_dead_letter_policies && fn.trigger != "schedule"
  }

  triggers_replace = [
    google_cloudfunctions2_function.function[each.key].event_trigger[0].trigger,
    google_storage_bucket_object.functions_source.md5hash,
    google_pubsub_topic.dead_letter[each.value.trigger == "storage" ? "storage" : each.value.topic].id,
    var.max_delivery_attempts,
  ]

  provisioner "local-exec" {
    command = "bash ${path.module}/scripts/attach-dead-letter.sh"
    environment = {
      PROJECT               = var.project
      TRIGGER               = google_cloudfunctions2_function.function[each.key].event_trigger[0].trigger
      DEAD_LETTER_TOPIC     = google_pubsub_topic.dead_letter[each.value.trigger == "storage" ? "storage" : each.value.topic].id
      MAX_DELIVERY_ATTEMPTS = tostring(var.max_delivery_attempts)
      PUBSUB_SERVICE_AGENT  = local.pubsub_service_agent
    }
  }

  depends_on = [google_pubsub_topic_iam_member.dead_letter_publisher]
}
