# The APIs the deployment uses. They stay enabled on `terraform destroy`: other workloads in the
# project may depend on them, and disabling an API can delete that API's resources.
locals {
  required_apis = toset([
    "aiplatform.googleapis.com",       # Vertex AI pipeline jobs (launch_job, track_status, promote_model)
    "artifactregistry.googleapis.com", # the functions' container images
    "cloudbuild.googleapis.com",       # builds the functions from the source archive
    "cloudfunctions.googleapis.com",   # Cloud Functions (2nd gen)
    "cloudkms.googleapis.com",         # the optional CMEK key's IAM bindings
    "cloudscheduler.googleapis.com",   # reconcile's schedule
    "eventarc.googleapis.com",         # the functions' triggers
    "firestore.googleapis.com",        # records
    "iam.googleapis.com",              # service accounts
    "logging.googleapis.com",          # the PipelineJob state sink
    "pubsub.googleapis.com",           # topics, Eventarc transport
    "run.googleapis.com",              # 2nd gen functions run on Cloud Run
    "storage.googleapis.com",          # datasets and source buckets
  ])
}

resource "google_project_service" "required" {
  for_each = local.required_apis

  project            = var.project
  service            = each.value
  disable_on_destroy = false
}

# The project number names the Google-managed service agents (Pub/Sub, Vertex AI).
data "google_project" "this" {
  project_id = var.project
}

# The Cloud Storage service agent publishes the bucket's object notifications that Eventarc's
# storage trigger consumes.
data "google_storage_project_service_account" "gcs" {
  project = var.project

  depends_on = [google_project_service.required]
}

locals {
  pubsub_service_agent   = "service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
  vertex_service_agent   = "service-${data.google_project.this.number}@gcp-sa-aiplatform.iam.gserviceaccount.com"
  storage_service_agent  = data.google_storage_project_service_account.gcs.email_address
  datasets_bucket_name   = var.datasets_bucket_name != "" ? var.datasets_bucket_name : "${var.project}-distillery-datasets"
  source_bucket_name     = "${var.project}-distillery-functions-source"
  source_archive         = var.source_archive != "" ? var.source_archive : "${path.module}/../build/functions-source.zip"
  pipeline_service_email = var.pipeline_service_account != "" ? var.pipeline_service_account : google_service_account.pipeline[0].email
}
