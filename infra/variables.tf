# Inputs. Two kinds:
#  - deployment choices (project, region, sizes, switches);
#  - the product's settings: one variable per environment variable of distillery.core.settings,
#    named like the Settings field, with the same default. They reach the functions unchanged
#    through local.function_environment (functions.tf); tests/unit/test_infra.py holds the two
#    sides together.

# --- Deployment -----------------------------------------------------------------------------

variable "project" {
  description = "The Google Cloud project ID to deploy into (needs billing)."
  type        = string
}

variable "region" {
  description = "Region of the functions, the datasets bucket, their Eventarc triggers and the scheduler job. The storage trigger must live where the bucket lives, so both follow this."
  type        = string
  default     = "us-central1"
}

variable "labels" {
  description = "Labels put on every resource that takes them."
  type        = map(string)
  default     = { app = "distillery" }
}

variable "datasets_bucket_name" {
  description = "Name of the datasets bucket (DISTILLERY_BUCKET). Empty: <project>-distillery-datasets."
  type        = string
  default     = ""
}

variable "bucket_versioning" {
  description = "Keep noncurrent object versions in the datasets bucket (an overwritten or deleted dataset can be restored)."
  type        = bool
  default     = true
}

variable "noncurrent_version_retention_days" {
  description = "With versioning on: days a noncurrent object version is kept before it is deleted."
  type        = number
  default     = 30
}

variable "bucket_force_destroy" {
  description = "Let `terraform destroy` delete the buckets with their objects. Off by default: destroying the deployment must not silently destroy the datasets."
  type        = bool
  default     = false
}

variable "source_archive" {
  description = "Path of the functions' source archive built by scripts/package. Empty: ../build/functions-source.zip next to this folder."
  type        = string
  default     = ""
}

variable "python_runtime" {
  description = "Cloud Functions runtime; the project targets Python 3.11."
  type        = string
  default     = "python311"
}

variable "functions" {
  description = <<-EOT
    The functions to deploy, by entry point (functions/main.py). Each key must be one of
    local.function_catalog (functions.tf), which fixes its trigger and roles. An entry whose code
    is not in main.py yet stays disabled (tests/unit/test_infra.py checks that the enabled
    entries are exactly main.py's). Sizes are optional per entry.
  EOT
  type = map(object({
    enabled            = bool
    available_memory   = optional(string, "512Mi")
    timeout_seconds    = optional(number, 300)
    min_instance_count = optional(number, 0)
    max_instance_count = optional(number, 10)
  }))
  default = {
    validate_dataset = { enabled = true, available_memory = "1Gi", timeout_seconds = 540 }
    launch_job       = { enabled = true }
    track_status     = { enabled = true }
    promote_model    = { enabled = true }
    reconcile        = { enabled = true }
    poll_tuning_jobs = { enabled = true, timeout_seconds = 60 }
  }

  validation {
    # The keys of local.function_catalog (functions.tf).
    condition = alltrue([
      for name in keys(var.functions) :
      contains(["validate_dataset", "launch_job", "track_status", "promote_model", "reconcile", "poll_tuning_jobs"], name)
    ])
    error_message = "functions keys must be entry points known to local.function_catalog: validate_dataset, launch_job, track_status, promote_model, reconcile, poll_tuning_jobs."
  }
}

variable "firestore_location" {
  description = "Location of the (default) Firestore database (e.g. nam5, eur3, us-central1). Fixed once created."
  type        = string
  default     = "nam5"
}

variable "firestore_deletion_policy" {
  description = "What `terraform destroy` does with the Firestore database: ABANDON keeps it (and its records), DELETE deletes it."
  type        = string
  default     = "ABANDON"

  validation {
    condition     = contains(["ABANDON", "DELETE"], var.firestore_deletion_policy)
    error_message = "firestore_deletion_policy must be ABANDON or DELETE."
  }
}

variable "attach_dead_letter_policies" {
  description = "After each event-triggered function is deployed, attach a dead-letter policy to the Pub/Sub subscription its Eventarc trigger created (needs gcloud where Terraform runs; see README, Deployment)."
  type        = bool
  default     = true
}

variable "max_delivery_attempts" {
  description = "Deliveries of one event before it is moved to the dead-letter topic (Pub/Sub allows 5 to 100)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100
    error_message = "max_delivery_attempts must be between 5 and 100."
  }
}

variable "storage_events_dead_letter_topic" {
  description = "Dead-letter topic of the storage trigger (validate_dataset), whose transport topic Eventarc names itself."
  type        = string
  default     = "distill-dataset-events-dlq"
}

variable "dead_letter_retention" {
  description = "How long a dead-lettered message waits in its pull subscription (max 7 days)."
  type        = string
  default     = "604800s"
}

variable "reconcile_schedule" {
  description = "Cron schedule of the reconcile function (polls Vertex AI for states the logging sink may have lost)."
  type        = string
  default     = "*/15 * * * *"
}

variable "poll_tuning_jobs_schedule" {
  description = "Cron schedule of the poll_tuning_jobs function (tuning jobs announce no state changes, so they are polled)."
  type        = string
  default     = "* * * * *"
}

variable "reconcile_time_zone" {
  description = "Time zone of reconcile_schedule."
  type        = string
  default     = "Etc/UTC"
}

variable "cmek_key" {
  description = "Optional Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K). When set: the datasets bucket's default key, and DISTILLERY_CMEK_KEY for the launcher (Vertex AI applies it where CMEK is possible: GPU, everything in us-central1). The key must be in the bucket's location."
  type        = string
  default     = ""

  validation {
    condition     = var.cmek_key == "" || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.cmek_key))
    error_message = "cmek_key must be empty or projects/P/locations/L/keyRings/R/cryptoKeys/K."
  }
}

variable "pipeline_service_account" {
  description = "Email of the service account Vertex AI jobs run as (DISTILLERY_SERVICE_ACCOUNT): a tuning job's serviceAccount, a pipeline job's service account. Empty: the distillery-pipeline account created here."
  type        = string
  default     = ""
}

# --- Product settings (distillery.core.settings.Settings; same names and defaults) ---------------

variable "vertex_region" {
  description = "DISTILLERY_REGION: region of the Vertex AI jobs. With the gemini backend a Gemini supervised tuning region (the tuning job and its tuned model live there); with the pipeline backend a distillation region."
  type        = string
  default     = "us-central1"

  validation {
    # distillery.facts.SUPPORTED_REGIONS (distillation), then the GEMINI_TUNING_REGIONS that are
    # not among them: what distillery.core.settings.Settings accepts with the gemini backend.
    # Which of them the chosen backend runs in is checked by the functions (Settings.check and
    # the policy refuse a region the job's backend lacks).
    condition = contains([
      "us-central1", "europe-west4", "asia-southeast1", "us-west1", "europe-west3", "europe-west2",
      "asia-northeast1", "us-east4", "us-west4", "northamerica-northeast1", "europe-west9",
      "europe-west1", "asia-northeast3", "asia-east1", "asia-east2", "asia-south1",
      "australia-southeast1", "europe-central2", "europe-north1", "europe-southwest1",
      "europe-west6", "europe-west8", "me-central1", "me-central2", "me-west1",
      "southamerica-east1",
    ], var.vertex_region)
    error_message = "vertex_region must be a Gemini tuning region or a distillation region (see distillery.facts.GEMINI_TUNING_REGIONS and SUPPORTED_REGIONS)."
  }
}

variable "launch_topic" {
  description = "DISTILLERY_LAUNCH_TOPIC: LaunchRequests (validate_dataset and users publish, launch_job consumes)."
  type        = string
  default     = "distill-launch-requests"
}

variable "job_events_topic" {
  description = "DISTILLERY_JOB_EVENTS_TOPIC: PipelineJob state LogEntries from the logging sink (track_status consumes)."
  type        = string
  default     = "distill-job-events"
}

variable "status_topic" {
  description = "DISTILLERY_STATUS_TOPIC: StatusEvents (users and promote_model subscribe)."
  type        = string
  default     = "distill-job-status"
}

variable "datasets_collection" {
  description = "DISTILLERY_DATASETS_COLLECTION: Firestore collection of validation records."
  type        = string
  default     = "datasets"
}

variable "jobs_collection" {
  description = "DISTILLERY_JOBS_COLLECTION: Firestore collection of job records."
  type        = string
  default     = "jobs"
}

variable "models_collection" {
  description = "DISTILLERY_MODELS_COLLECTION: Firestore collection of champion models."
  type        = string
  default     = "models"
}

variable "failures_collection" {
  description = "DISTILLERY_FAILURES_COLLECTION: Firestore collection of events rejected as malformed."
  type        = string
  default     = "failed_events"
}

variable "datasets_prefix" {
  description = "DISTILLERY_DATASETS_PREFIX: the watched prefix users upload to."
  type        = string
  default     = "datasets/"
}

variable "validated_prefix" {
  description = "DISTILLERY_VALIDATED_PREFIX: immutable, content-addressed validated copies."
  type        = string
  default     = "validated/"
}

variable "reports_prefix" {
  description = "DISTILLERY_REPORTS_PREFIX: validation reports."
  type        = string
  default     = "reports/"
}

variable "pipeline_root_prefix" {
  description = "DISTILLERY_PIPELINE_ROOT_PREFIX: pipeline job outputs."
  type        = string
  default     = "pipeline-root/"
}

variable "max_findings_per_rule" {
  description = "DISTILLERY_MAX_FINDINGS_PER_RULE: findings a report lists per rule."
  type        = number
  default     = 20
}

variable "launch_claim_seconds" {
  description = "DISTILLERY_LAUNCH_CLAIM_SECONDS: how long a launch claim holds off other deliveries."
  type        = number
  default     = 30
}

variable "reconcile_collection" {
  description = "DISTILLERY_RECONCILE_COLLECTION: Firestore collection where reconcile keeps its cursor between runs."
  type        = string
  default     = "reconcile"
}

variable "reconcile_budget_seconds" {
  description = "DISTILLERY_RECONCILE_BUDGET_SECONDS: how long one reconcile run works; keep it below that function's timeout_seconds (the next run goes on from its cursor)."
  type        = number
  default     = 240
}

variable "requested_lease_seconds" {
  description = "DISTILLERY_REQUESTED_LEASE_SECONDS: how long a REQUESTED job is left to its delivery before reconcile resumes it."
  type        = number
  default     = 600
}

variable "log_level" {
  description = "DISTILLERY_LOG_LEVEL: log level of the functions."
  type        = string
  default     = "INFO"
}

variable "template_uri" {
  description = "DISTILLERY_TEMPLATE_URI: the distillation pipeline template."
  type        = string
  default     = "https://us-kfp.pkg.dev/ml-pipeline/distillation/distillation/v1.0.0"
}

variable "teacher_model" {
  description = "DISTILLERY_TEACHER_MODEL: default teacher."
  type        = string
  default     = "text-unicorn@001"
}

variable "student_model" {
  description = "DISTILLERY_STUDENT_MODEL: default student."
  type        = string
  default     = "text-bison@002"
}

variable "long_context_students" {
  description = "DISTILLERY_LONG_CONTEXT_STUDENTS: comma list of 32k-context students."
  type        = string
  default     = "text-bison-32k@002"
}

variable "accelerators" {
  description = "DISTILLERY_ACCELERATORS: accelerators in order of preference (GPU, TPU, or GPU,TPU for fallback)."
  type        = string
  default     = "GPU"
}

variable "allowed_regions" {
  description = "DISTILLERY_ALLOWED_REGIONS: comma list of regions a job may touch; empty: every distillation region."
  type        = string
  default     = ""
}

variable "data_residency" {
  description = "DISTILLERY_DATA_RESIDENCY: empty, eu, us, north-america or asia."
  type        = string
  default     = ""

  validation {
    condition     = contains(["", "eu", "us", "north-america", "asia"], var.data_residency)
    error_message = "data_residency must be empty, eu, us, north-america or asia."
  }
}

variable "require_cmek" {
  description = "DISTILLERY_REQUIRE_CMEK: refuse every job that would not be encrypted with a customer-managed key."
  type        = bool
  default     = false
}

variable "max_concurrent_jobs" {
  description = "DISTILLERY_MAX_CONCURRENT_JOBS: refuse launches while this many jobs are active (0: no limit)."
  type        = number
  default     = 0
}

variable "max_train_steps" {
  description = "DISTILLERY_MAX_TRAIN_STEPS: refuse explicit train_steps above it (0: no limit)."
  type        = number
  default     = 0
}

variable "backend" {
  description = "DISTILLERY_BACKEND: the backend a job runs on unless its backend override names the other: gemini (Vertex AI supervised tuning, tuningJobs: what runs on Google Cloud today) or pipeline (the seed's distillation pipeline; its template and PaLM 2 models were shut down on 2025-04-09, so it cannot succeed on Google Cloud)."
  type        = string
  default     = "gemini"
  validation {
    condition     = contains(["pipeline", "gemini"], var.backend)
    error_message = "backend must be pipeline or gemini."
  }
}

variable "daily_tuning_usd" {
  description = "DISTILLERY_DAILY_TUNING_USD: daily budget of the gemini backend in estimated tuning cost, USD (0: none)."
  type        = number
  default     = 0
}

variable "tuning_mode" {
  description = "DISTILLERY_TUNING_MODE: the gemini backend's tuning mode unless a job's tuning_mode override names the other: supervised, or distillation (v1beta1 distillationSpec: early access for allowlisted projects, us-central1 only)."
  type        = string
  default     = "supervised"
  validation {
    condition     = contains(["supervised", "distillation"], var.tuning_mode)
    error_message = "tuning_mode must be supervised or distillation."
  }
}

variable "gemini_teacher_model" {
  description = "DISTILLERY_GEMINI_TEACHER_MODEL: the teacher of the gemini distillation mode unless a job's teacher_model override names another."
  type        = string
  default     = "gemini-3.1-pro"
}

variable "labeling_teacher_model" {
  description = "DISTILLERY_LABELING_TEACHER_MODEL: the teacher that labels and explains a supervised gemini job's training set through batch prediction, unless a job's teacher_model override names another (gemini-2.5-pro, gemini-2.5-flash, gemini-2.5-flash-lite)."
  type        = string
  default     = "gemini-2.5-pro"
  validation {
    condition     = contains(["gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"], var.labeling_teacher_model)
    error_message = "labeling_teacher_model must be gemini-2.5-pro, gemini-2.5-flash or gemini-2.5-flash-lite."
  }
}

variable "labeling_min_fraction" {
  description = "DISTILLERY_LABELING_MIN_FRACTION: a labeling job goes on to tuning only if at least this fraction of its examples came back labeled with a rationale (above 0, at most 1)."
  type        = number
  default     = 0.9
  validation {
    condition     = var.labeling_min_fraction > 0 && var.labeling_min_fraction <= 1
    error_message = "labeling_min_fraction must be above 0 and at most 1."
  }
}

variable "rationale_mixture" {
  description = "DISTILLERY_RATIONALE_MIXTURE: the fraction of labeled examples that also give an explain: rationale task (0 to 1)."
  type        = number
  default     = 1.0
  validation {
    condition     = var.rationale_mixture >= 0 && var.rationale_mixture <= 1
    error_message = "rationale_mixture must be from 0 to 1."
  }
}

variable "daily_accelerator_hours" {
  description = "DISTILLERY_DAILY_ACCELERATOR_HOURS: daily budget of estimated accelerator-hours (0: none)."
  type        = number
  default     = 0
}

variable "min_eval_accuracy" {
  description = "DISTILLERY_MIN_EVAL_ACCURACY: minimum eval_fraction_of_correct_next_step_preds a model needs to be promoted (0 to 1)."
  type        = number
  default     = 0
}

variable "max_eval_loss" {
  description = "DISTILLERY_MAX_EVAL_LOSS: maximum eval_total_loss a promoted model may have (0: no maximum)."
  type        = number
  default     = 0
}

variable "min_eval_predictions" {
  description = "DISTILLERY_MIN_EVAL_PREDICTIONS: minimum eval_num_predictions (eval tokens scored) a promoted model needs (0: no minimum)."
  type        = number
  default     = 0
}

variable "promotion_margin" {
  description = "DISTILLERY_PROMOTION_MARGIN: how much a model must beat the champion by (mean paired difference on the golden set)."
  type        = number
  default     = 0
}

variable "min_task_score" {
  description = "DISTILLERY_MIN_TASK_SCORE: the golden-set task metric every model must reach (0 to 1)."
  type        = number
  default     = 0
}

variable "promotion_tolerance" {
  description = "DISTILLERY_PROMOTION_TOLERANCE: how far below zero the paired difference's confidence interval may reach."
  type        = number
  default     = 0.02
}

variable "max_class_regression" {
  description = "DISTILLERY_MAX_CLASS_REGRESSION: the most any one class's accuracy may drop against the champion."
  type        = number
  default     = 0.1
}

variable "promotion_confidence" {
  description = "DISTILLERY_PROMOTION_CONFIDENCE: the confidence level of the paired-bootstrap interval."
  type        = number
  default     = 0.95
}

variable "bootstrap_resamples" {
  description = "DISTILLERY_BOOTSTRAP_RESAMPLES: bootstrap resamples of the interval."
  type        = number
  default     = 2000
}

variable "bootstrap_seed" {
  description = "DISTILLERY_BOOTSTRAP_SEED: the seed of the resampling."
  type        = number
  default     = 0
}

variable "promote_without_eval" {
  description = "DISTILLERY_PROMOTE_WITHOUT_EVAL: promote a family's first model when there is no golden set to judge it on."
  type        = bool
  default     = false
}

variable "canary_percent" {
  description = "DISTILLERY_CANARY_PERCENT: a promoted model's share of the traffic while the champion keeps the rest (0: all of it)."
  type        = number
  default     = 0
}

variable "promote_budget_seconds" {
  description = "DISTILLERY_PROMOTE_BUDGET_SECONDS: how long one promote_model call waits for a deployment; keep it below that function's timeout_seconds (a redelivery or reconcile finishes the deployment)."
  type        = number
  default     = 240
}
