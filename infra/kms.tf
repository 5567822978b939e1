# Optional customer-managed encryption (var.cmek_key). The services that encrypt with the key do
# so as their service agents, which must hold it:
#   - Cloud Storage: the datasets bucket's default key (the key must be in the bucket's location);
#   - Vertex AI: the jobs the launcher creates with the key (DISTILLERY_CMEK_KEY): a tuning job's
#     encryptionSpec (gemini backend; the key must be in the tuning region, var.vertex_region),
#     a pipeline job's encryption_spec_key_name (pipeline backend; only where CMEK works there:
#     GPU, us-central1). The policy refuses or skips a key that cannot protect the job.
resource "google_kms_crypto_key_iam_member" "storage_agent" {
  count = var.cmek_key != "" ? 1 : 0

  crypto_key_id = var.cmek_key
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${local.storage_service_agent}"
}

# The Vertex AI service agent exists once the API has been used or its identity created
# (`gcloud beta services identity create --service=aiplatform.googleapis.com`); README.
resource "google_kms_crypto_key_iam_member" "vertex_agent" {
  count = var.cmek_key != "" ? 1 : 0

  crypto_key_id = var.cmek_key
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${local.vertex_service_agent}"

  depends_on = [google_project_service.required]
}
