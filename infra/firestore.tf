# The (default) Firestore database in Native mode: the functions' clients use the default
# database, and the collections (datasets, jobs, models, failed_events) need no declaration.
# A project that already has one: `terraform import google_firestore_database.default
# projects/PROJECT/databases/(default)` (README, Deployment).
resource "google_firestore_database" "default" {
  project     = var.project
  name        = "(default)"
  location_id = var.firestore_location
  type        = "FIRESTORE_NATIVE"

  app_engine_integration_mode = "DISABLED"
  # Job records and history are the audit trail: keep 7 days of versions to recover from mistakes.
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  # Protected unless the operator chose to delete it with the deployment.
  delete_protection_state = var.firestore_deletion_policy == "DELETE" ? "DELETE_PROTECTION_DISABLED" : "DELETE_PROTECTION_ENABLED"
  deletion_policy         = var.firestore_deletion_policy

  depends_on = [google_project_service.required]
}

# `distillery jobs --state STATE` reads the newest jobs in one state first (equality on `state`,
# ordered by `created_at` descending), which Firestore serves only from a composite index.
resource "google_firestore_index" "jobs_by_state_newest_first" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "jobs"

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
  fields {
    field_path = "created_at"
    order      = "DESCENDING"
  }
}

# `reconcile` reads the unfinished jobs of one state a page at a time in `job_id` order (equality
# on `state`, ordered by `job_id`, from a cursor), which also needs a composite index.
resource "google_firestore_index" "jobs_by_state_and_id" {
  project    = var.project
  database   = google_firestore_database.default.name
  collection = "jobs"

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }
  fields {
    field_path = "job_id"
    order      = "ASCENDING"
  }
}
