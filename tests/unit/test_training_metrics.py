"""read_training_metrics: the tuning metrics from a job's TensorBoard event files."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from distillery.core.ports import PipelineJobInfo
from distillery.core.training_metrics import (
    MAX_CURVE_POINTS,
    TrainingMetrics,
    TrainingMetricsUnavailableError,
    downsample,
    read_training_metrics,
)
from distillery.fakes import InMemoryObjectStore

BUCKET = "pipeline-bucket"
TB_DIR = "pipeline-root/job-1/tensorboard"
TRAIN = ("train_total_loss", "train_fraction_of_correct_next_step_preds", "train_num_predictions")
EVAL = ("eval_total_loss", "eval_fraction_of_correct_next_step_preds", "eval_num_predictions")


def job(uri: str | None = f"gs://{BUCKET}/{TB_DIR}/", **metadata: Any) -> PipelineJobInfo:
    """A finished job whose trainer task exposes ``tensorboard_metrics`` at ``uri``."""
    outputs = {"model": {"artifacts": [{"schemaTitle": "system.Model", "uri": "gs://b/m/"}]}}
    if uri is not None:
        outputs["tensorboard_metrics"] = {
            "artifacts": [{"schemaTitle": "system.Artifact", "uri": uri}]
        }
    resource = {
        "jobDetail": {
            "taskDetails": [
                {"taskName": "prepare-data", "state": "SUCCEEDED"},
                {
                    "taskName": "distillation-trainer",
                    "execution": {"metadata": {"input:train_steps": 30, **metadata}},
                    "outputs": outputs,
                },
            ]
        }
    }
    return PipelineJobInfo("projects/p/locations/l/pipelineJobs/job-1", "S", resource=resource)


def summary_writer_files(directory: Path, scalars: dict[str, list[tuple[int, float]]]) -> None:
    """Event files as the local trainer writes them (torch's SummaryWriter)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(directory))
    try:
        for tag, points in scalars.items():
            for step, value in points:
                writer.add_scalar(tag, value, global_step=step)
    finally:
        writer.close()


def tensorboard_files(directory: Path, scalars: dict[str, list[tuple[int, float]]]) -> None:
    """Event files written by tensorboard's own writer (``simple_value`` scalars, no torch)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(directory))
    try:
        for tag, points in scalars.items():
            for step, value in points:
                value_pb = summary_pb2.Summary.Value(tag=tag, simple_value=value)
                summary = summary_pb2.Summary(value=[value_pb])
                writer.add_event(event_pb2.Event(step=step, wall_time=1.0, summary=summary))
    finally:
        writer.close()


def upload(store: InMemoryObjectStore, directory: Path, prefix: str = TB_DIR) -> list[str]:
    names = []
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            name = f"{prefix}/{path.relative_to(directory).as_posix()}"
            store.put(BUCKET, name, path.read_bytes())
            names.append(name)
    return names


def curves(steps: tuple[int, ...] = (10, 20, 30)) -> dict[str, list[tuple[int, float]]]:
    """``/tag`` → points; every value is distinct so a wrong pick shows."""
    return {
        f"/{tag}": [(step, round(number / 10 + step / 1000, 4)) for step in steps]
        for number, tag in enumerate(TRAIN + EVAL, start=1)
    }


def test_reads_the_curves_and_final_values_of_the_summary_writer_files(tmp_path: Path) -> None:
    store = InMemoryObjectStore()
    written = curves()
    summary_writer_files(tmp_path, written)
    upload(store, tmp_path)

    metrics = read_training_metrics(store, job())

    assert set(metrics.curves) == set(TRAIN + EVAL)  # the leading "/" is gone
    for tag, points in written.items():
        got = metrics.curves[tag.lstrip("/")]
        assert [step for step, _ in got] == [10, 20, 30]
        assert [value for _, value in got] == pytest.approx([value for _, value in points])
    assert metrics.final == pytest.approx({tag.lstrip("/"): p[-1][1] for tag, p in written.items()})
    assert metrics.selected_step is None


def test_eval_figures_are_those_of_the_selected_checkpoint(tmp_path: Path) -> None:
    store = InMemoryObjectStore()
    written = curves()
    summary_writer_files(tmp_path, written)
    upload(store, tmp_path)

    metrics = read_training_metrics(store, job(**{"output:selected_step": 20}))

    assert metrics.selected_step == 20
    for tag in EVAL:  # the checkpoint chosen at step 20
        assert metrics.final[tag] == pytest.approx(dict(written[f"/{tag}"])[20])
    for tag in TRAIN:  # the train curves' last values
        assert metrics.final[tag] == pytest.approx(dict(written[f"/{tag}"])[30])


def test_a_selected_step_without_an_eval_point_keeps_the_last_value(tmp_path: Path) -> None:
    store = InMemoryObjectStore()
    written = curves()
    summary_writer_files(tmp_path, written)
    upload(store, tmp_path)

    metrics = read_training_metrics(store, job(**{"output:selected_step": 25}))

    assert metrics.final["eval_total_loss"] == pytest.approx(written["/eval_total_loss"][-1][1])


def test_curves_are_sorted_by_step_and_merged_across_files(tmp_path: Path) -> None:
    store = InMemoryObjectStore()
    summary_writer_files(tmp_path / "a", {"/train_total_loss": [(30, 0.3), (10, 0.1)]})
    summary_writer_files(tmp_path / "b", {"/train_total_loss": [(20, 0.2)], "untouched": [(1, 9)]})
    upload(store, tmp_path)
    store.put(BUCKET, f"{TB_DIR}/notes.txt", b"not an event file")

    metrics = read_training_metrics(store, job())

    assert metrics.curves["train_total_loss"] == [(10, 0.1), (20, 0.2), (30, 0.3)]
    assert metrics.final == {"train_total_loss": 0.3, "untouched": 9.0}


def test_tensor_scalars_of_tensorboards_own_writer_are_read(tmp_path: Path) -> None:
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(tmp_path))
    for step, value in ((5, 0.5), (10, 0.75)):
        tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[value])
        summary = summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag="/eval_total_loss", tensor=tensor)]
        )
        writer.add_event(event_pb2.Event(step=step, wall_time=1.0, summary=summary))
    histogram = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="/weights")])
    writer.add_event(event_pb2.Event(step=10, summary=histogram))  # no scalar: ignored
    writer.close()
    store = InMemoryObjectStore()
    upload(store, tmp_path)

    metrics = read_training_metrics(store, job())

    assert metrics.curves == {"eval_total_loss": [(5, 0.5), (10, 0.75)]}


def test_a_torn_or_corrupt_tail_keeps_the_records_before_it(tmp_path: Path) -> None:
    store = InMemoryObjectStore()
    summary_writer_files(tmp_path, {"/train_total_loss": [(10, 0.1), (20, 0.2), (30, 0.3)]})
    [name] = upload(store, tmp_path)
    data = store.read_bytes(BUCKET, name)

    store.put(BUCKET, name, data[:-7])  # the last record cut short, as while being written
    torn = read_training_metrics(store, job())
    assert [step for step, _ in torn.curves["train_total_loss"]] == [10, 20]

    flipped = bytearray(data)
    flipped[-6] ^= 0xFF  # a byte of the last record's payload: its checksum fails
    store.put(BUCKET, name, bytes(flipped))
    corrupt = read_training_metrics(store, job())
    assert [step for step, _ in corrupt.curves["train_total_loss"]] == [10, 20]


def test_long_curves_are_downsampled_keeping_the_first_and_last_points(tmp_path: Path) -> None:
    store = InMemoryObjectStore()
    points = [(step, step / 1000) for step in range(1, 451)]
    summary_writer_files(tmp_path, {"/train_total_loss": points})
    upload(store, tmp_path)

    metrics = read_training_metrics(store, job())

    curve = metrics.curves["train_total_loss"]
    steps = [step for step, _ in curve]
    assert len(curve) == MAX_CURVE_POINTS
    assert steps[0] == 1 and steps[-1] == 450 and steps == sorted(set(steps))
    assert max(b - a for a, b in itertools.pairwise(steps)) <= 3  # evenly spread
    assert metrics.final["train_total_loss"] == pytest.approx(0.45)


def test_downsample_keeps_short_curves_whole_and_refuses_a_limit_below_two() -> None:
    points = [(step, float(step)) for step in range(5)]
    assert downsample(points, 5) == points
    assert downsample(points, 2) == [points[0], points[-1]]
    assert downsample(points, 3) == [points[0], points[2], points[4]]
    with pytest.raises(ValueError, match="first and last"):
        downsample(points, 1)


@pytest.mark.parametrize(
    ("info", "message"),
    [
        (job(uri=None), "exposes no tensorboard_metrics artifact"),
        (job(uri=f"/gcs/{BUCKET}/{TB_DIR}/"), "is not a gs:// directory"),
        (job(uri=f"gs://{BUCKET}/elsewhere/"), "no TensorBoard event file under"),
        (PipelineJobInfo("n", "PIPELINE_STATE_SUCCEEDED", resource={}), "exposes no"),
    ],
)
def test_a_job_without_readable_event_files_says_why(info: PipelineJobInfo, message: str) -> None:
    store = InMemoryObjectStore()
    store.put(BUCKET, f"{TB_DIR}/events.out.tfevents.1.host", b"")
    with pytest.raises(TrainingMetricsUnavailableError, match=message):
        read_training_metrics(store, info)


def test_event_files_without_scalars_say_so() -> None:
    store = InMemoryObjectStore()
    store.put(BUCKET, f"{TB_DIR}/events.out.tfevents.1.host", b"")
    with pytest.raises(TrainingMetricsUnavailableError, match="hold no scalar"):
        read_training_metrics(store, job())


def test_curves_document_is_a_firestore_value_of_parallel_arrays() -> None:
    metrics = TrainingMetrics(final={"a": 2.0}, curves={"b": [(1, 0.5)], "a": [(1, 1.0), (2, 2.0)]})
    assert metrics.curves_document() == {
        "a": {"steps": [1, 2], "values": [1.0, 2.0]},
        "b": {"steps": [1], "values": [0.5]},
    }


@pytest.mark.parametrize("value", [0.7, 0.85, 0.1, 1e-05, 123.456, 0.0, 1.0])
def test_float32_scalars_read_back_as_the_decimal_written(tmp_path: Path, value: float) -> None:
    store = InMemoryObjectStore()
    summary_writer_files(tmp_path, {"/eval_fraction_of_correct_next_step_preds": [(1, value)]})
    upload(store, tmp_path)
    metrics = read_training_metrics(store, job())
    assert metrics.final["eval_fraction_of_correct_next_step_preds"] == value  # exactly
