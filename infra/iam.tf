# Service accounts and their grants: one account per function with only what its code does,
# plus the accounts that trigger, build and run things for them. README "Deployment" has the table.

# --- One account per function -------------------------------------------------------------

resource "google_service_account" "function" {
  for_each = local.enabled_functions

  project      = var.project
  account_id   = "distillery-${substr(replace(each.key, "_", "-"), 0, 19)}"
  display_name = "Distillery ${each.key} function"
  description  = "Runtime identity of the ${each.key} Cloud Function."
}

locals {
  function_project_grants = merge([
    for name, fn in local.enabled_functions : {
      for role in fn.project_roles : "${name} ${role}" => { function = name, role = role }
    }
  ]...)

  function_topic_grants = merge([
    for name, fn in local.enabled_functions : {
      for topic in fn.publishes_to : "${name} ${topic}" => { function = name, topic = topic }
    }
  ]...)

  function_bucket_grants = merge([
    for name, fn in local.enabled_functions : {
      for grant in fn.bucket_roles : "${name} ${grant.role} ${grant.prefix}" => merge(grant, { function = name })
    }
  ]...)
}

# Firestore has no per-collection IAM, and Vertex AI none per pipeline job: these are
# project-level by necessity.
resource "google_project_iam_member" "function" {
  for_each = local.function_project_grants

  project = var.project
  role    = each.value.role
  member  = "serviceAccount:${google_service_account.function[each.value.function].email}"
}

# Publishing: on the one topic each function writes to, not project-wide.
resource "google_pubsub_topic_iam_member" "function_publisher" {
  for_each = local.function_topic_grants

  project = var.project
  topic   = google_pubsub_topic.product[each.value.topic].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${google_service_account.function[each.value.function].email}"
}

# Objects: on the datasets bucket, narrowed to a prefix by an IAM condition where the function
# writes (so validate_dataset can never write under the prefix that triggers it).
resource "google_storage_bucket_iam_member" "function" {
  for_each = local.function_bucket_grants

  bucket = google_storage_bucket.datasets.name
  role   = each.value.role
  member = "serviceAccount:${google_service_account.function[each.value.function].email}"

  dynamic "condition" {
    for_each = each.value.prefix == "" ? [] : [each.value.prefix]
    content {
      title       = "only-${trimsuffix(condition.value, "/")}"
      description = "Objects under ${condition.value} only."
      expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.datasets.name}/objects/${condition.value}\")"
    }
  }
}

# The launcher submits jobs that run as the pipeline account: it must be allowed to act as it.
resource "google_service_account_iam_member" "launcher_acts_as_pipeline" {
  for_each = { for name, fn in local.enabled_functions : name => fn if fn.uses_pipeline_service_account }

  service_account_id = "projects/${var.project}/serviceAccounts/${local.pipeline_service_email}"
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.function[each.key].email}"
}

# --- The account Vertex AI jobs run as (DISTILLERY_SERVICE_ACCOUNT) ---------------------------
# A tuning job (gemini) runs as its serviceAccount, and whoever creates it needs actAs on that
# account (launcher_acts_as_pipeline); unset, it would run as the Vertex AI Secure Fine-Tuning
# Service Agent instead. A pipeline job runs as its service account the same way.

resource "google_service_account" "pipeline" {
  count = var.pipeline_service_account == "" ? 1 : 0

  project      = var.project
  account_id   = "distillery-pipeline"
  display_name = "Distillery pipeline jobs"
  description  = "Identity of the Vertex AI jobs (tuning jobs, distillation pipeline jobs): reads validated datasets, writes pipeline-root."
}

# The pipeline's steps create tuning jobs and upload the model.
resource "google_project_iam_member" "pipeline_vertex" {
  count = var.pipeline_service_account == "" ? 1 : 0

  project = var.project
  role    = "roles/aiplatform.user"
  member  = "serviceAccount:${google_service_account.pipeline[0].email}"
}

resource "google_storage_bucket_iam_member" "pipeline_reads_validated" {
  count = var.pipeline_service_account == "" ? 1 : 0

  bucket = google_storage_bucket.datasets.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.pipeline[0].email}"

  condition {
    title       = "only-validated"
    description = "Validated copies only (a tuning job trains on the converted copy there): a job never reads the upload area."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.datasets.name}/objects/${var.validated_prefix}\")"
  }
}

resource "google_storage_bucket_iam_member" "pipeline_writes_root" {
  count = var.pipeline_service_account == "" ? 1 : 0

  bucket = google_storage_bucket.datasets.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${google_service_account.pipeline[0].email}"

  condition {
    title       = "only-pipeline-root"
    description = "Job outputs only."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.datasets.name}/objects/${var.pipeline_root_prefix}\")"
  }
}

# --- Eventarc: the identity triggers deliver events with ----------------------------------

resource "google_service_account" "trigger" {
  project      = var.project
  account_id   = "distillery-trigger"
  display_name = "Distillery Eventarc triggers"
  description  = "Identity the Eventarc triggers use to deliver events to the functions."
}

# Receiving events is a project-level grant by design of Eventarc; invoking is per function
# (google_cloud_run_v2_service_iam_member.trigger_invoker).
resource "google_project_iam_member" "trigger_event_receiver" {
  project = var.project
  role    = "roles/eventarc.eventReceiver"
  member  = "serviceAccount:${google_service_account.trigger.email}"
}

# Pub/Sub's service agent mints the OIDC tokens of the push deliveries as the trigger account
# (granted automatically only in projects created after April 2021).
resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  service_account_id = google_service_account.trigger.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${local.pubsub_service_agent}"
}

# Cloud Storage's service agent publishes the bucket's events to the transport topic the storage
# trigger creates (whose name Eventarc chooses, hence project level).
resource "google_project_iam_member" "storage_agent_publisher" {
  project = var.project
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${local.storage_service_agent}"
}

# --- Cloud Build: the identity that builds the functions from the source archive ----------

resource "google_service_account" "build" {
  project      = var.project
  account_id   = "distillery-build"
  display_name = "Distillery function builds"
  description  = "Builds the functions' images from the source archive (instead of a default account)."
}

# The three grants Cloud Functions documents for a custom build account, instead of the broad
# roles/cloudbuild.builds.builder. Project level because the build reads the copy of the source
# that Cloud Functions keeps in its own gcf-v2-sources-* bucket and pushes to its gcf-artifacts
# repository, both created by the service at the first deployment.
resource "google_project_iam_member" "build" {
  for_each = toset([
    "roles/logging.logWriter",       # build logs
    "roles/artifactregistry.writer", # push the function's image
    "roles/storage.objectViewer",    # read the function's source
  ])

  project = var.project
  role    = each.value
  member  = "serviceAccount:${google_service_account.build.email}"
}

# --- Cloud Scheduler: the identity that calls reconcile and poll_tuning_jobs ----------------

resource "google_service_account" "scheduler" {
  count = anytrue([for name in ["reconcile", "poll_tuning_jobs"] : contains(keys(local.enabled_functions), name)]) ? 1 : 0

  project      = var.project
  account_id   = "distillery-scheduler"
  display_name = "Distillery scheduler"
  description  = "Calls the reconcile and poll_tuning_jobs functions on their schedules."
}

resource "google_cloud_run_v2_service_iam_member" "scheduler_invoker" {
  count = contains(keys(local.enabled_functions), "reconcile") ? 1 : 0

  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.function["reconcile"].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler[0].email}"
}

resource "google_cloud_run_v2_service_iam_member" "scheduler_poll_invoker" {
  count = contains(keys(local.enabled_functions), "poll_tuning_jobs") ? 1 : 0

  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.function["poll_tuning_jobs"].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler[0].email}"
}
