#!/usr/bin/env bash
# Attach a dead-letter policy to the Pub/Sub subscription an Eventarc trigger created.
#
# Called by Terraform (dead_letter.tf) after each event-triggered function is deployed; can be run
# by hand with the same variables:
#   PROJECT                project ID
#   TRIGGER                projects/P/locations/L/triggers/T (the function's event_trigger.trigger)
#   DEAD_LETTER_TOPIC      projects/P/topics/<topic>-dlq
#   MAX_DELIVERY_ATTEMPTS  5..100
#   PUBSUB_SERVICE_AGENT   service-<project number>@gcp-sa-pubsub.iam.gserviceaccount.com
set -euo pipefail

: "${PROJECT:?}" "${TRIGGER:?}" "${DEAD_LETTER_TOPIC:?}" "${MAX_DELIVERY_ATTEMPTS:?}" "${PUBSUB_SERVICE_AGENT:?}"

location="$(cut -d/ -f4 <<<"$TRIGGER")"
trigger_id="${TRIGGER##*/}"

# The trigger's transport: the push subscription Eventarc created for it.
subscription="$(gcloud eventarc triggers describe "$trigger_id" \
    --project="$PROJECT" --location="$location" \
    --format='value(transport.pubsub.subscription)')"
if [ -z "$subscription" ]; then
    echo "attach-dead-letter: trigger $TRIGGER has no Pub/Sub subscription" >&2
    exit 1
fi

gcloud pubsub subscriptions update "$subscription" \
    --project="$PROJECT" \
    --dead-letter-topic="$DEAD_LETTER_TOPIC" \
    --max-delivery-attempts="$MAX_DELIVERY_ATTEMPTS"

# Forwarding a message to the dead-letter topic acknowledges it on the source subscription: the
# Pub/Sub service agent needs to subscribe there (it publishes on the topic: pubsub.tf).
gcloud pubsub subscriptions add-iam-policy-binding "$subscription" \
    --project="$PROJECT" \
    --member="serviceAccount:$PUBSUB_SERVICE_AGENT" \
    --role="roles/pubsub.subscriber" >/dev/null

echo "attach-dead-letter: $subscription -> $DEAD_LETTER_TOPIC after $MAX_DELIVERY_ATTEMPTS attempts"
