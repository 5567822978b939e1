"""The metrics a finished pipeline job wrote: TensorBoard event files, read through the store.

Where the real pipelines put them: the trainer tasks of Google's LLM tuning pipelines
(``SupervisedFineTuner``, ``Reinforcer``, ``RewardModelTrainer`` in
``google_cloud_pipeline_components/_implementation/llm/`` of kubeflow/pipelines) declare the
output ``tensorboard_metrics: dsl.Output[dsl.Artifact]`` — a ``system.Artifact`` whose ``uri`` is
the Cloud Storage directory the trainer writes its event files into (``--tensorboard_metrics_path``
is the artifact's ``/gcs/`` mount); ``upload_tensorboard_metrics`` hands that same directory to
``tb-gcp-uploader --logdir`` only when a ``tensorboard_resource_id`` is given. No ``system.Metrics``
artifact and no model metadata carry the figures, and google-cloud-aiplatform's
``_TunableModelMixin`` notes that "Distillation does not have pipeline outputs yet". So the event
files are the one place the tuning metrics (``/train_total_loss``,
``/eval_fraction_of_correct_next_step_preds``, ... — SPEC "After the job") are found.

Event files are TFRecord files of ``tensorflow.Event`` protocol buffers (the ``tensorboard``
package's own ``event_pb2``): each record is ``uint64 length``, ``uint32 masked CRC-32C of the
length``, ``length`` bytes, ``uint32 masked CRC-32C of the bytes`` (little-endian).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from distillery.core.errors import ObjectNotFoundError, PermanentError
from distillery.core.ports import ObjectStore, PipelineJobInfo

logger = logging.getLogger(__name__)

#: The output name of the trainer task's TensorBoard artifact in Google's LLM pipelines.
TENSORBOARD_OUTPUT = "tensorboard_metrics"
#: The execution metadata key where the local Vertex AI API records the checkpoint it selected
#: (the real pipeline documents no such key: there the eval figures are the last ones written).
SELECTED_STEP_KEY = "output:selected_step"
#: At most this many points of each curve are kept (the last one always).
MAX_CURVE_POINTS = 200
#: Event files are named ``events.out.tfevents.<time>.<host>...`` by every TensorBoard writer.
EVENT_FILE_MARKER = "tfevents"
#: A record longer than this is not a scalar event: the file is not what it claims to be.
MAX_RECORD_BYTES = 64 << 20

_HEADER = struct.Struct("<QI")
_CRC = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8


class TrainingMetricsUnavailableError(PermanentError):
    """The job exposes no TensorBoard metrics that can be read (the message says why)."""


@dataclass(frozen=True)
class TrainingMetrics:
    """The scalars a job's event files hold, named without TensorBoard's leading ``/``.

    ``curves``: every scalar tag's points ``(step, value)`` sorted by step, at most
    :data:`MAX_CURVE_POINTS` each. ``final``: each tag's last value, except the ``eval_*`` tags,
    whose value is the one at the selected checkpoint's step when checkpoint selection chose one.
    """

    final: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    selected_step: int | None = None

    def curves_document(self) -> dict[str, dict[str, list[float] | list[int]]]:
        """The curves as a JSON (and Firestore) value: ``{tag: {"steps": [...], "values": [...]}}``.

        Firestore refuses an array directly inside an array, so the ``[step, value]`` pairs are
        kept as two parallel arrays per tag.
        """
        return {
            tag: {"steps": [step for step, _ in points], "values": [value for _, value in points]}
            for tag, points in sorted(self.curves.items())
        }


def read_training_metrics(storage: ObjectStore, info: PipelineJobInfo) -> TrainingMetrics:
    """The tuning metrics of a finished job, from its ``tensorboard_metrics`` event files.

    Raises:
        TrainingMetricsUnavailableError: the job has no ``tensorboard_metrics`` artifact, its uri
            is not a ``gs://`` directory, the directory holds no event file, or no scalar could be
            read from them.
        RetryableError: Cloud Storage failed; reading again may succeed.
    """
    uri, metadata = _tensorboard_artifact(info)
    bucket, prefix = _split_directory(uri)
    try:
        names = [n for n in storage.list_names(bucket, prefix) if EVENT_FILE_MARKER in _basename(n)]
    except ObjectNotFoundError as exc:
        raise TrainingMetricsUnavailableError(f"the event files at {uri} are gone: {exc}") from exc
    if not names:
        raise TrainingMetricsUnavailableError(f"no TensorBoard event file under {uri}")
    points: dict[str, dict[int, float]] = {}
    for name in names:  # sorted: a later file's point at a step replaces an earlier file's
        try:
            with storage.open_read(bucket, name) as reader:
                for tag, step, value in _scalars(reader, f"gs://{bucket}/{name}"):
                    points.setdefault(tag, {})[step] = value
        except ObjectNotFoundError as exc:  # replaced or deleted since the listing
            logger.warning("event file gs://%s/%s vanished while read: %s", bucket, name, exc)
    if not points:
        raise TrainingMetricsUnavailableError(f"the event files under {uri} hold no scalar")
    curves = {tag: sorted(by_step.items()) for tag, by_step in sorted(points.items())}
    selected = _selected_step(metadata)
    final = {tag: _final_value(tag, curve, selected) for tag, curve in curves.items()}
    return TrainingMetrics(
        final=final,
        curves={tag: downsample(curve, MAX_CURVE_POINTS) for tag, curve in curves.items()},
        selected_step=selected,
    )


def downsample(points: list[tuple[int, float]], limit: int) -> list[tuple[int, float]]:
    """At most ``limit`` of ``points``, evenly spread, the first and the last always kept.

    Raises:
        ValueError: ``limit`` is below 2 (the first and the last point could not both stay).
    """
    if limit < 2:
        raise ValueError(f"a curve keeps at least its first and last point, not {limit}")
    if len(points) <= limit:
        return list(points)
    last = len(points) - 1
    # Evenly spaced indices from 0 to last; rounding never repeats one since last >= limit.
    return [points[round(i * last / (limit - 1))] for i in range(limit)]


def _tensorboard_artifact(info: PipelineJobInfo) -> tuple[str, Mapping[str, Any]]:
    """The ``tensorboard_metrics`` artifact's uri and its task's execution metadata."""
    detail = (info.resource or {}).get("jobDetail") or {}
    for task in detail.get("taskDetails") or []:
        output = (task.get("outputs") or {}).get(TENSORBOARD_OUTPUT) or {}
        for artifact in output.get("artifacts") or []:
            if artifact.get("uri"):
                metadata = (task.get("execution") or {}).get("metadata") or {}
                return str(artifact["uri"]), metadata
    raise TrainingMetricsUnavailableError(
        f"pipeline job {info.name} exposes no {TENSORBOARD_OUTPUT} artifact"
    )


def _split_directory(uri: str) -> tuple[str, str]:
    """``(bucket, prefix)`` of a ``gs://bucket/dir/`` uri (a prefix ends in ``/``)."""
    if not uri.startswith("gs://"):
        raise TrainingMetricsUnavailableError(
            f"{TENSORBOARD_OUTPUT} uri {uri!r} is not a gs:// directory"
        )
    bucket, _, path = uri[5:].partition("/")
    if not bucket:
        raise TrainingMetricsUnavailableError(f"{TENSORBOARD_OUTPUT} uri {uri!r} has no bucket")
    path = path.strip("/")
    return bucket, f"{path}/" if path else ""


def _basename(name: str) -> str:
    return name.rsplit("/", 1)[-1]


def _selected_step(metadata: Mapping[str, Any]) -> int | None:
    value = metadata.get(SELECTED_STEP_KEY)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _final_value(tag: str, curve: list[tuple[int, float]], selected: int | None) -> float:
    if selected is not None and tag.startswith("eval_"):
        at_selected = dict(curve).get(selected)
        if at_selected is not None:
            return at_selected
        logger.warning(
            "%s has no point at the selected step %d: its last value is kept", tag, selected
        )
    return curve[-1][1]


def _masked_crc(data: bytes) -> int:
    # google-crc32c comes with google-cloud-storage (which checks downloads with it).
    import google_crc32c

    crc = int(google_crc32c.value(data))
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _records(reader: BinaryIO, where: str) -> Iterator[bytes]:
    """The records of one TFRecord stream; a torn or corrupt record ends it (with a warning),
    as TensorBoard itself treats a file still being written."""
    while True:
        header = reader.read(_HEADER.size)
        if not header:
            return
        if len(header) < _HEADER.size:
            logger.warning("%s ends in a torn record header: the rest is skipped", where)
            return
        length, length_crc = _HEADER.unpack(header)
        if _masked_crc(header[:8]) != length_crc or length > MAX_RECORD_BYTES:
            logger.warning("%s has a corrupt record length: the rest is skipped", where)
            return
        data = reader.read(length)
        footer = reader.read(_CRC.size)
        if len(data) < length or len(footer) < _CRC.size:
            logger.warning("%s ends in a torn record: the rest is skipped", where)
            return
        if _masked_crc(data) != _CRC.unpack(footer)[0]:
            logger.warning("%s has a record failing its checksum: the rest is skipped", where)
            return
        yield data


def _scalars(reader: BinaryIO, where: str) -> Iterator[tuple[str, int, float]]:
    """``(tag without the leading /, step, value)`` of every scalar summary in an event stream."""
    from tensorboard.compat.proto import event_pb2

    for record in _records(reader, where):
        event = event_pb2.Event()
        try:
            event.ParseFromString(record)
        except Exception:  # protobuf's DecodeError: not an Event, so not ours to read
            logger.warning("%s holds a record that is not an Event: the rest is skipped", where)
            return
        if not event.HasField("summary"):
            continue  # the file_version header, graphs, session logs
        for value in event.summary.value:
            number = _scalar(value)
            if number is not None:
                yield value.tag.lstrip("/"), int(event.step), number


def _scalar(value: Any) -> float | None:
    """A summary value's scalar: ``simple_value`` (TF1 writers, torch's ``SummaryWriter``) or a
    rank-0 float/int tensor (TF2 writers); None for images, histograms and the like."""
    kind = value.WhichOneof("value")
    if kind == "simple_value":
        return _shortest_float32(value.simple_value)
    if kind != "tensor" or value.tensor.tensor_shape.dim:
        return None
    tensor = value.tensor
    if len(tensor.float_val) == 1:
        return _shortest_float32(tensor.float_val[0])
    for values in (tensor.double_val, tensor.int_val, tensor.int64_val):
        if len(values) == 1:
            return float(values[0])
    formats = {1: "<f", 2: "<d", 3: "<i", 9: "<q"}  # DT_FLOAT, DT_DOUBLE, DT_INT32, DT_INT64
    fmt = formats.get(int(tensor.dtype))
    if fmt and len(tensor.tensor_content) == struct.calcsize(fmt):
        number = float(struct.unpack(fmt, tensor.tensor_content)[0])
        return _shortest_float32(number) if fmt == "<f" else number
    return None


def _shortest_float32(number: float) -> float:
    """The shortest decimal that is the same float32 as ``number``.

    Scalars are stored as float32: 0.7 comes back as 0.699999988..., which would fail a gate of
    "at least 0.7" that the value written passes. The shortest decimal naming the same float32 is
    the value the writer meant (at float32's precision, nothing finer was recorded).
    """
    if number != number or number in (float("inf"), float("-inf")):
        return number
    packed = struct.pack("<f", number)
    for digits in range(1, 10):  # 9 significant digits always identify a float32
        candidate = float(f"{number:.{digits}g}")
        if struct.pack("<f", candidate) == packed:
            return candidate
    return number
