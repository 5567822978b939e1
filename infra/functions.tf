# The Cloud Functions (2nd gen), one per entry point of functions/main.py, each with its own
# service account, trigger and environment.

locals {
  # Everything about each function that is not a sizing choice: its trigger and what it may do.
  # Keys are entry points in functions/main.py. var.functions switches them on and off.
  #   trigger:      storage (object finalized in the datasets bucket), pubsub (a product topic),
  #                 or schedule (Cloud Scheduler calls it over HTTPS)
  #   topic:        for pubsub, the key in local.product_topics it consumes
  #   project_roles, publishes_to (keys of local.product_topics), bucket_roles (prefix "" means
  #   the whole bucket): its service account's grants (iam.tf; table in README, Deployment).
  function_catalog = {
    validate_dataset = {
      description   = "Validates datasets dropped under the datasets prefix; copies valid ones to the validated prefix and requests their launch."
      trigger       = "storage"
      topic         = null
      project_roles = ["roles/datastore.user"]
      publishes_to  = ["launch"]
      bucket_roles = [
        { role = "roles/storage.objectViewer", prefix = "" },                    # reads datasets and their siblings
        { role = "roles/storage.objectCreator", prefix = var.validated_prefix }, # immutable copies: create only
        { role = "roles/storage.objectUser", prefix = var.reports_prefix },      # a redelivery overwrites its report
      ]
      uses_pipeline_service_account = false
    }
    launch_job = {
      description   = "Submits one Vertex AI job per LaunchRequest: a tuning job (gemini backend) or a distillation pipeline job (pipeline backend)."
      trigger       = "pubsub"
      topic         = "launch"
      project_roles = ["roles/aiplatform.user", "roles/datastore.user"]
      publishes_to  = ["status"]
      # A job whose teacher labels its training set first: it reads the validated copy and
      # writes the teacher's requests beside it (create only). Other jobs read no object.
      bucket_roles = [
        { role = "roles/storage.objectViewer", prefix = var.validated_prefix },
        { role = "roles/storage.objectCreator", prefix = "${var.validated_prefix}labeled/" },
      ]
      uses_pipeline_service_account = true
    }
    track_status = {
      description                   = "Turns PipelineJob state LogEntries into job transitions and StatusEvents."
      trigger                       = "pubsub"
      topic                         = "job_events"
      project_roles                 = ["roles/aiplatform.viewer", "roles/datastore.user"]
      publishes_to                  = ["status"]
      bucket_roles                  = []
      uses_pipeline_service_account = false
    }
    promote_model = {
      description   = "Judges a SUCCEEDED job's model on the family's golden set (generateContent for a tuned Gemini model, predict for a pipeline's) and promotes it."
      trigger       = "pubsub"
      topic         = "status"
      project_roles = ["roles/aiplatform.user", "roles/datastore.user"] # asks and deploys models
      publishes_to  = ["status"]
      bucket_roles = [
        # The golden set (datasets/<name>.golden.jsonl, else the validated eval set), its frozen
        # copy under golden/, the pipeline job's metrics under pipeline-root/, earlier reports.
        { role = "roles/storage.objectViewer", prefix = "" },
        { role = "roles/storage.objectCreator", prefix = "golden/" },                      # content-addressed: create only
        { role = "roles/storage.objectUser", prefix = "${var.reports_prefix}decisions/" }, # a redelivery rewrites its report
      ]
      uses_pipeline_service_account = false
    }
    reconcile = {
      description   = "Polls Vertex AI for active jobs whose state change the logging sink did not deliver."
      trigger       = "schedule"
      topic         = null
      project_roles = ["roles/aiplatform.user", "roles/datastore.user"] # finishes promotions, labeling
      publishes_to  = ["status"]
      # Finishes a teacher's labeling as poll_tuning_jobs does (and resumes REQUESTED jobs).
      bucket_roles = [
        { role = "roles/storage.objectViewer", prefix = var.validated_prefix },
        { role = "roles/storage.objectCreator", prefix = "${var.validated_prefix}labeled/" },
        { role = "roles/storage.objectViewer", prefix = var.reports_prefix },
        { role = "roles/storage.objectCreator", prefix = var.reports_prefix },
      ]
      uses_pipeline_service_account = true
    }
    poll_tuning_jobs = {
      description   = "Polls the tuning jobs of active gemini jobs, which announce no state changes, every minute."
      trigger       = "schedule"
      topic         = null
      project_roles = ["roles/aiplatform.user", "roles/datastore.user"] # creates a labeled job's tuning job
      publishes_to  = ["status"]
      # A teacher's labeling: reads the validated copy and the batch output, writes the labeled
      # set, training file and lineage (create only) and the labeling report (create only).
      bucket_roles = [
        { role = "roles/storage.objectViewer", prefix = var.validated_prefix },
        { role = "roles/storage.objectCreator", prefix = "${var.validated_prefix}labeled/" },
        { role = "roles/storage.objectViewer", prefix = var.reports_prefix },
        { role = "roles/storage.objectCreator", prefix = var.reports_prefix },
      ]
      uses_pipeline_service_account = true
    }
  }

  enabled_functions = {
    for name, options in var.functions : name => merge(local.function_catalog[name], options)
    if options.enabled
  }

  # The functions' environment: every variable distillery.core.settings reads, from the variables of
  # the same name (variables.tf). Not set, deliberately:
  #   DISTILLERY_VERTEX_API_ENDPOINT  unset in production: the client then calls
  #                                   {region}-aiplatform.googleapis.com (the local stack sets it).
  function_environment = {
    GOOGLE_CLOUD_PROJECT                = var.project
    DISTILLERY_BUCKET                   = local.datasets_bucket_name
    DISTILLERY_REGION                   = var.vertex_region
    DISTILLERY_LAUNCH_TOPIC             = var.launch_topic
    DISTILLERY_JOB_EVENTS_TOPIC         = var.job_events_topic
    DISTILLERY_STATUS_TOPIC             = var.status_topic
    DISTILLERY_DATASETS_COLLECTION      = var.datasets_collection
    DISTILLERY_JOBS_COLLECTION          = var.jobs_collection
    DISTILLERY_MODELS_COLLECTION        = var.models_collection
    DISTILLERY_RECONCILE_COLLECTION     = var.reconcile_collection
    DISTILLERY_FAILURES_COLLECTION      = var.failures_collection
    DISTILLERY_DATASETS_PREFIX          = var.datasets_prefix
    DISTILLERY_VALIDATED_PREFIX         = var.validated_prefix
    DISTILLERY_REPORTS_PREFIX           = var.reports_prefix
    DISTILLERY_PIPELINE_ROOT_PREFIX     = var.pipeline_root_prefix
    DISTILLERY_MAX_FINDINGS_PER_RULE    = tostring(var.max_findings_per_rule)
    DISTILLERY_LAUNCH_CLAIM_SECONDS     = tostring(var.launch_claim_seconds)
    DISTILLERY_REQUESTED_LEASE_SECONDS  = tostring(var.requested_lease_seconds)
    DISTILLERY_RECONCILE_BUDGET_SECONDS = tostring(var.reconcile_budget_seconds)
    DISTILLERY_LOG_LEVEL                = var.log_level
    DISTILLERY_TEMPLATE_URI             = var.template_uri
    DISTILLERY_TEACHER_MODEL            = var.teacher_model
    DISTILLERY_STUDENT_MODEL            = var.student_model
    DISTILLERY_LONG_CONTEXT_STUDENTS    = var.long_context_students
    DISTILLERY_ACCELERATORS             = var.accelerators
    DISTILLERY_ALLOWED_REGIONS          = var.allowed_regions
    DISTILLERY_DATA_RESIDENCY           = var.data_residency
    DISTILLERY_CMEK_KEY                 = var.cmek_key
    DISTILLERY_REQUIRE_CMEK             = tostring(var.require_cmek)
    DISTILLERY_SERVICE_ACCOUNT          = local.pipeline_service_email
    DISTILLERY_MAX_CONCURRENT_JOBS      = tostring(var.max_concurrent_jobs)
    DISTILLERY_MAX_TRAIN_STEPS          = tostring(var.max_train_steps)
    DISTILLERY_DAILY_ACCELERATOR_HOURS  = tostring(var.daily_accelerator_hours)
    DISTILLERY_BACKEND                  = var.backend
    DISTILLERY_DAILY_TUNING_USD         = tostring(var.daily_tuning_usd)
    DISTILLERY_TUNING_MODE              = var.tuning_mode
    DISTILLERY_GEMINI_TEACHER_MODEL     = var.gemini_teacher_model
    DISTILLERY_LABELING_TEACHER_MODEL   = var.labeling_teacher_model
    DISTILLERY_LABELING_MIN_FRACTION    = tostring(var.labeling_min_fraction)
    DISTILLERY_RATIONALE_MIXTURE        = tostring(var.rationale_mixture)
    DISTILLERY_MIN_EVAL_ACCURACY        = tostring(var.min_eval_accuracy)
    DISTILLERY_MAX_EVAL_LOSS            = tostring(var.max_eval_loss)
    DISTILLERY_MIN_EVAL_PREDICTIONS     = tostring(var.min_eval_predictions)
    DISTILLERY_PROMOTION_MARGIN         = tostring(var.promotion_margin)
    DISTILLERY_MIN_TASK_SCORE           = tostring(var.min_task_score)
    DISTILLERY_PROMOTION_TOLERANCE      = tostring(var.promotion_tolerance)
    DISTILLERY_MAX_CLASS_REGRESSION     = tostring(var.max_class_regression)
    DISTILLERY_PROMOTION_CONFIDENCE     = tostring(var.promotion_confidence)
    DISTILLERY_BOOTSTRAP_RESAMPLES      = tostring(var.bootstrap_resamples)
    DISTILLERY_BOOTSTRAP_SEED           = tostring(var.bootstrap_seed)
    DISTILLERY_PROMOTE_WITHOUT_EVAL     = tostring(var.promote_without_eval)
    DISTILLERY_CANARY_PERCENT           = tostring(var.canary_percent)
    DISTILLERY_PROMOTE_BUDGET_SECONDS   = tostring(var.promote_budget_seconds)
  }

  event_types = {
    storage = "google.cloud.storage.object.v1.finalized"
    pubsub  = "google.cloud.pubsub.topic.v1.messagePublished"
  }
}

resource "google_cloudfunctions2_function" "function" {
  for_each = local.enabled_functions

  name        = replace(each.key, "_", "-") # function (Cloud Run service) names take no "_"
  project     = var.project
  location    = var.region
  description = each.value.description
  labels      = var.labels

  build_config {
    runtime         = var.python_runtime
    entry_point     = each.key
    service_account = google_service_account.build.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.functions_source.name
      }
    }
  }

  service_config {
    available_memory   = each.value.available_memory
    timeout_seconds    = each.value.timeout_seconds
    min_instance_count = each.value.min_instance_count
    max_instance_count = each.value.max_instance_count
    # One event at a time per instance: validation streams large files, and Eventarc scales out.
    max_instance_request_concurrency = 1
    # Event deliveries (Eventarc) count as internal traffic; Cloud Scheduler calls reconcile from
    # outside the project's network, so that one accepts all traffic but requires IAM (no
    # allUsers invoker anywhere).
    ingress_settings               = each.value.trigger == "schedule" ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.function[each.key].email
    environment_variables          = local.function_environment
  }

  dynamic "event_trigger" {
    for_each = each.value.trigger == "schedule" ? [] : [each.value.trigger]
    content {
      trigger_region        = var.region # a storage trigger must be where the bucket is
      event_type            = local.event_types[event_trigger.value]
      pubsub_topic          = event_trigger.value == "pubsub" ? google_pubsub_topic.product[each.value.topic].id : null
      retry_policy          = "RETRY_POLICY_RETRY" # a raised error means "transient": deliver again
      service_account_email = google_service_account.trigger.email

      dynamic "event_filters" {
        for_each = event_trigger.value == "storage" ? [google_storage_bucket.datasets.name] : []
        content {
          attribute = "bucket"
          value     = event_filters.value
        }
      }
    }
  }

  depends_on = [
    google_project_service.required,
    google_project_iam_member.build,
    google_project_iam_member.trigger_event_receiver,
    google_project_iam_member.storage_agent_publisher,
    google_project_iam_member.function,
    google_pubsub_topic_iam_member.function_publisher,
    google_storage_bucket_iam_member.function,
    google_firestore_database.default,
  ]
}

# Only the Eventarc trigger's account may invoke the event-driven functions, and only the
# scheduler's account may invoke reconcile (on that function's own Cloud Run service).
resource "google_cloud_run_v2_service_iam_member" "trigger_invoker" {
  for_each = { for name, fn in local.enabled_functions : name => fn if fn.trigger != "schedule" }

  project  = var.project
  location = var.region
  name     = google_cloudfunctions2_function.function[each.key].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.trigger.email}"
}
