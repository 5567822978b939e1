"""The emulator's own configuration: local students and teachers, and how jobs are trained.

Every environment variable the emulator reads beyond :class:`~distillery.core.settings.Settings` is
named here, once:

- ``DISTILLERY_LOCAL_STUDENTS`` — comma-separated ``REFERENCE=DIRECTORY`` pairs mapping a
  ``student_model_reference`` (e.g. ``text-bison@002``) to a local Hugging Face seq2seq checkpoint
  directory to fine-tune. A student not listed is trained from scratch with the trainer's built-in
  small architecture (the offline default).
- ``DISTILLERY_LOCAL_TEACHERS`` — the same for ``teacher_model_reference``: a local checkpoint that
  labels unlabeled datasets. A teacher not listed may instead name a model of the emulator's Model
  Registry, by resource name (``projects/P/locations/L/models/ID``) or display name.
- ``DISTILLERY_EMULATOR_DATA_DIR`` — where the emulator keeps job work directories and its cache
  of model artifacts downloaded from the bucket (default: a fresh temporary directory, removed
  when the emulator stops).
- ``DISTILLERY_EMULATOR_CREATE_DELAY_SECONDS`` — seconds ``pipelineJobs.create`` waits after it
  stored the job and before it answers (default 0). The real service has latency; a delay opens
  the window in which a caller that dies has had its job accepted without hearing so (fault
  tests kill a function there).

Fault injection (tests only; real Vertex AI fails rows of a batch prediction job for its own
reasons, e.g. an internal error or a quota, and these settings make the local one fail chosen
rows the same way: the output line has no ``response`` and a non-empty ``status``, a
google.rpc error body with status ``INTERNAL``, and the job still SUCCEEDS with the row
counted in ``completionStats.failedCount``):

- ``DISTILLERY_EMULATOR_BATCH_FAIL_LINES`` — comma-separated line numbers (1-based, of each
  input file of a batch prediction job, blank lines counted) whose requests fail.
- ``DISTILLERY_EMULATOR_BATCH_FAIL_MARKER`` — a text: every request whose conversation
  contains it fails.

Example: ``DISTILLERY_LOCAL_TEACHERS='text-unicorn@001=/models/unicorn,my-teacher=/models/t2'``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distillery.core.errors import ConfigurationError

LOCAL_STUDENTS_VARIABLE = "DISTILLERY_LOCAL_STUDENTS"
LOCAL_TEACHERS_VARIABLE = "DISTILLERY_LOCAL_TEACHERS"
DATA_DIR_VARIABLE = "DISTILLERY_EMULATOR_DATA_DIR"
CREATE_DELAY_VARIABLE = "DISTILLERY_EMULATOR_CREATE_DELAY_SECONDS"
BATCH_FAIL_LINES_VARIABLE = "DISTILLERY_EMULATOR_BATCH_FAIL_LINES"
BATCH_FAIL_MARKER_VARIABLE = "DISTILLERY_EMULATOR_BATCH_FAIL_MARKER"
#: The fault injection variables (a stack sets them for its emulator, never the calling shell).
BATCH_FAULT_VARIABLES = (BATCH_FAIL_LINES_VARIABLE, BATCH_FAIL_MARKER_VARIABLE)

#: The module the training worker and the predictors come from (see :class:`TrainerOptions`).
DEFAULT_TRAINER_MODULE = "distillery.local.trainer"
#: Seconds a cancelled worker gets after SIGTERM before it is killed.
DEFAULT_STOP_GRACE_SECONDS = 5.0


def parse_model_map(raw: str, variable: str) -> dict[str, Path]:
    """``"ref=/dir,ref2=/dir2"`` → ``{"ref": Path("/dir"), ...}`` (blank entries ignored).

    Raises:
        ConfigurationError: an entry is not ``REFERENCE=DIRECTORY``, or names a reference twice.
    """
    mapping: dict[str, Path] = {}
    for entry in raw.split(","):
        if not entry.strip():
            continue
        reference, separator, directory = entry.partition("=")
        reference, directory = reference.strip(), directory.strip()
        if not separator or not reference or not directory:
            raise ConfigurationError(
                f"{variable} must list REFERENCE=DIRECTORY pairs separated by commas, "
                f"got {entry.strip()!r}"
            )
        if reference in mapping:
            raise ConfigurationError(f"{variable} maps {reference!r} twice")
        mapping[reference] = Path(directory).expanduser()
    return mapping


@dataclass(frozen=True)
class LocalModels:
    """Model references → local checkpoint directories (``DISTILLERY_LOCAL_*``)."""

    students: Mapping[str, Path] = field(default_factory=dict)
    teachers: Mapping[str, Path] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LocalModels:
        """The mappings of ``environ`` (default ``os.environ``).

        Raises:
            ConfigurationError: a variable is malformed.
        """
        environ = os.environ if environ is None else environ
        return cls(
            students=parse_model_map(
                environ.get(LOCAL_STUDENTS_VARIABLE, ""), LOCAL_STUDENTS_VARIABLE
            ),
            teachers=parse_model_map(
                environ.get(LOCAL_TEACHERS_VARIABLE, ""), LOCAL_TEACHERS_VARIABLE
            ),
        )


@dataclass(frozen=True)
class TrainerOptions:
    """How the emulator trains jobs (installing these is what installs the trainer).

    ``trainer_module`` must offer the :mod:`distillery.local.trainer` API (``TrainingConfig``,
    ``TrainingExample``, ``train``, ``label_with_teacher``, ``load_predictor``,
    ``TrainingError``); tests name a light fake here. It is imported in the worker process to
    train, and in the emulator process (lazily, on the first predict) to serve models.
    """

    local_models: LocalModels = field(default_factory=LocalModels)
    trainer_module: str = DEFAULT_TRAINER_MODULE
    #: Students with a 32k context (batch 8 wherever tuning runs); others are 8k-context.
    long_context_students: tuple[str, ...] = ()
    #: Job work directories and the model artifact cache; None: a temporary directory.
    data_dir: Path | None = None
    stop_grace_seconds: float = DEFAULT_STOP_GRACE_SECONDS
    #: Torch threads per training worker (None: the trainer's default, every core).
    num_threads: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> TrainerOptions:
        """Options from ``environ`` (``DISTILLERY_LOCAL_*``, ``DISTILLERY_EMULATOR_DATA_DIR``).

        Raises:
            ConfigurationError: a variable is malformed.
        """
        environ = os.environ if environ is None else environ
        data_dir = environ.get(DATA_DIR_VARIABLE, "").strip()
        values: dict[str, Any] = {
            "local_models": LocalModels.from_env(environ),
            "data_dir": Path(data_dir).expanduser() if data_dir else None,
        }
        values.update(overrides)
        return cls(**values)


def create_delay_seconds(environ: Mapping[str, str] | None = None) -> float:
    """``$DISTILLERY_EMULATOR_CREATE_DELAY_SECONDS`` as seconds (0 when unset or empty).

    Raises:
        ConfigurationError: the value is not a number of seconds >= 0.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get(CREATE_DELAY_VARIABLE, "").strip()
    if not raw:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        raise ConfigurationError(
            f"{CREATE_DELAY_VARIABLE} must be a number of seconds, not {raw!r}"
        ) from None
    if not seconds >= 0.0:  # also refuses NaN
        raise ConfigurationError(f"{CREATE_DELAY_VARIABLE} must be >= 0, not {raw!r}")
    return seconds


@dataclass(frozen=True)
class BatchFaults:
    """Batch prediction request lines the local API fails on purpose (see the module docs).

    The default fails nothing.
    """

    #: Input line numbers (1-based, per input file) whose requests fail.
    line_numbers: frozenset[int] = frozenset()
    #: A request whose conversation text contains this fails ("": none).
    marker: str = ""

    def __bool__(self) -> bool:
        return bool(self.line_numbers or self.marker)

    def fails(self, number: int, conversation: str) -> bool:
        """Whether the request of input line ``number``, whose conversation reads
        ``conversation``, is to fail."""
        return number in self.line_numbers or bool(self.marker and self.marker in conversation)

    def reason(self, number: int) -> str:
        """The failed row's message: it says the fault was injected, and by which setting."""
        variable = (
            BATCH_FAIL_LINES_VARIABLE if number in self.line_numbers else BATCH_FAIL_MARKER_VARIABLE
        )
        return f"Internal error encountered (injected by the local emulator's {variable})."

    def env(self) -> dict[str, str]:
        """The variables that configure these faults in an emulator's environment."""
        env: dict[str, str] = {}
        if self.line_numbers:
            env[BATCH_FAIL_LINES_VARIABLE] = ",".join(map(str, sorted(self.line_numbers)))
        if self.marker:
            env[BATCH_FAIL_MARKER_VARIABLE] = self.marker
        return env

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BatchFaults:
        """The faults ``environ`` (default ``os.environ``) asks for.

        Raises:
            ConfigurationError: a line number is not a whole number of at least 1.
        """
        environ = os.environ if environ is None else environ
        numbers: set[int] = set()
        for entry in environ.get(BATCH_FAIL_LINES_VARIABLE, "").split(","):
            if not entry.strip():
                continue
            try:
                number = int(entry.strip())
            except ValueError:
                number = 0
            if number < 1:
                raise ConfigurationError(
                    f"{BATCH_FAIL_LINES_VARIABLE} must list line numbers (1 or more) separated "
                    f"by commas, got {entry.strip()!r}"
                )
            numbers.add(number)
        return cls(frozenset(numbers), environ.get(BATCH_FAIL_MARKER_VARIABLE, ""))
