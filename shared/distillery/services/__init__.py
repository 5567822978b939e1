"""One module per function's service, each called by its entry point in ``functions/main.py``.

- :mod:`~distillery.services.datasets`: ``validate_dataset`` (a dataset dropped in the bucket);
- :mod:`~distillery.services.launcher`: ``launch_job`` (a LaunchRequest);
- :mod:`~distillery.services.status`: ``track_status`` (a pipeline job event) and ``reconcile``;
- :mod:`~distillery.services.promoter`: ``promote_model`` (a job that SUCCEEDED).
"""
