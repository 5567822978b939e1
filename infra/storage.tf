# The datasets bucket and the bucket holding the functions' source archive.
#
# Datasets bucket layout (ARCHITECTURE.md; prefixes are variables, passed to the functions):
#   datasets/       users upload here; watched by validate_dataset (never written by a function)
#   validated/      immutable, content-addressed copies jobs train on (validate_dataset writes)
#   reports/        validation reports as JSON (validate_dataset writes)
#   pipeline-root/  Vertex AI pipeline job outputs (the pipeline service account writes)

resource "google_storage_bucket" "datasets" {
  #checkov:skip=CKV_GCP_62:Access is recorded by Cloud Audit Logs (enable DATA_READ/DATA_WRITE for storage.googleapis.com in the project or organization audit config); GCS usage-log buckets are the legacy mechanism and would need a bucket of their own.
  name     = local.datasets_bucket_name
  project  = var.project
  location = var.region # regional, and the storage trigger's region must match it
  labels   = var.labels

  force_destroy               = var.bucket_force_destroy
  uniform_bucket_level_access = true       # IAM only, no object ACLs: the prefix conditions below are the whole story
  public_access_prevention    = "enforced" # datasets are never public, whatever IAM says

  versioning {
    enabled = var.bucket_versioning
  }

  # Versioning keeps every overwritten report and dataset; bound what that costs.
  dynamic "lifecycle_rule" {
    for_each = var.bucket_versioning ? [1] : []
    content {
      condition {
        days_since_noncurrent_time = var.noncurrent_version_retention_days
        with_state                 = "ARCHIVED"
      }
      action {
        type = "Delete"
      }
    }
  }

  dynamic "encryption" {
    for_each = var.cmek_key != "" ? [var.cmek_key] : []
    content {
      default_kms_key_name = encryption.value
    }
  }

  depends_on = [
    google_project_service.required,
    # With CMEK, the storage service agent must hold the key before the bucket uses it.
    google_kms_crypto_key_iam_member.storage_agent,
  ]
}

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62:Holds only build inputs (the functions' source archive); access is recorded by Cloud Audit Logs like the datasets bucket.
  name     = local.source_bucket_name
  project  = var.project
  location = var.region
  labels   = var.labels

  force_destroy               = var.bucket_force_destroy
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  # Each archive is a new object named after its content hash, so versions are only a safety
  # net for an accidental overwrite.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 7
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.required]
}

# The archive built by scripts/package. Its name carries its MD5, so a code change is a new
# object and Terraform redeploys every function built from it (and only then: the archive is
# deterministic).
resource "google_storage_bucket_object" "functions_source" {
  name         = "functions-source-${filemd5(local.source_archive)}.zip"
  bucket       = google_storage_bucket.source.name
  source       = local.source_archive
  content_type = "application/zip"
}
