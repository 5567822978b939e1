"""Distillery's own evaluation: the candidate and the champion answer the family's golden set.

The promoter judges a model on what it answers, not on a number the service may not publish
(SPEC "Judging a distilled model"):

- **The golden set** of a family is frozen once and recorded on ``models/{family}.golden``: the
  user's ``datasets/<name>.golden.jsonl`` (validated with the eval-set rules) when there is one,
  otherwise the eval set of the family's first promoted job. The frozen copy is immutable and
  content-addressed (``golden/<sha256>.jsonl``); a later upload does not change it — replacing
  it is an explicit act (:func:`replace_golden_set`, ``distillery golden``) that re-scores the
  champion.
- **Answers**: each example's ``input_text`` is sent to the endpoint, one prompt a request (so
  each latency is one example's), greedy (temperature 0). An example the endpoint refuses counts
  as an error and scores 0; a service that does not answer fails the evaluation (retried). How
  a model is asked depends on its backend (:func:`backend_of`): a ``pipeline`` model through
  ``:predict`` (:meth:`ModelEndpoints.predict`), a tuned Gemini model (``gemini``) through
  ``:generateContent`` on the endpoint its tuning job deployed it on (:meth:`TuningJobs.generate`:
  contents in, candidates out), since that is how Google documents a tuned Gemini model answers.
- **The label task**: a model tuned step-by-step (its job had a labeling stage) learned
  ``<label_task_prefix><prompt>`` → label, so it is asked in that form: the prefix before the
  text of the example's last user turn. A champion is asked with the prefix its entry records
  (``prompt_prefix``; none for older champions and pipeline ones). The decision and the report
  say which prefix each side was asked with.
- **Answers are recorded as they arrive** (:class:`Journal`): while a side (the candidate, the
  champion) answers, what it answered so far is written every :data:`JOURNAL_EVERY` answers, and
  whenever the call stops asking, to ``<reports>answers/<job_id>/<side>/<sequence>.json``. Each
  object holds the side's answers from the first prompt on, and what they are valid for (the
  endpoint, the model, its backend, the golden set's sha256, the prompt prefix, the generation
  parameters); the newest object of a side is its journal. A later call for the job asks only the
  prompts it does not hold yet (a refused prompt is held as refused: it is not asked again); a
  journal recorded for anything else is not used, and the side's next write replaces it. Objects
  are written create-if-absent under the next sequence number, so two deliveries of one event at
  once never overwrite each other's answers: the one that finds its number taken reads the newer
  journal and goes on from the longer of the two (at worst, a prompt is asked twice).
- **A time budget**: one call asks until a deadline (``promote_model``'s budget,
  ``DISTILLERY_PROMOTE_BUDGET_SECONDS``, measured on ``deps.clock`` from the start of the call);
  with prompts left then, it records the journal and raises :class:`EvaluationBudgetSpentError`
  (retryable): the event is delivered again and the next call goes on from there. The job's
  ``evaluation_progress`` says how far each side got. The journals stay once the decision is
  made (a few kilobytes; a decision made again against a new champion reuses the candidate's),
  and the decision report holds every answer, as before.
- **Scores and the decision** come from :mod:`distillery.evaluation` (task metrics, the paired
  bootstrap interval, the rule); :func:`build_report` gathers everything the decision report
  shows, and :func:`write_report` stores it as JSON and HTML under ``reports/decisions/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from distillery.core.errors import (
    ContentionError,
    ObjectNotFoundError,
    PermanentError,
    PreconditionFailedError,
    RequestRejectedError,
    RetryableError,
)
from distillery.core.runtime import Dependencies
from distillery.labeling._prompt import champion_prefix, label_task_prefix, with_prefix

logger = logging.getLogger(__name__)

#: Where frozen golden sets live in the bucket (never under the watched ``datasets/``).
GOLDEN_PREFIX = "golden/"
#: The largest golden set read (the eval-set limits keep real ones far below it).
MAX_GOLDEN_BYTES = 64 << 20
#: Generation parameters of the evaluation: greedy, so the same model answers the same way.
PREDICT_PARAMETERS: Mapping[str, Any] = {"temperature": 0.0}
#: How many times one prompt is asked again when the service does not answer.
PROMPT_ATTEMPTS = 3
#: Examples where the two models disagree that the report lists.
DISAGREEMENTS_SHOWN = 10
#: Where the answers of a side are recorded as they arrive, under the reports prefix:
#: ``<reports_prefix>answers/<job_id>/<side>/<sequence:06d>.json`` (the newest is the journal).
ANSWERS_FOLDER = "answers/"
#: New answers between two writes of a side's journal while it answers (each write is one
#: request; a call that stops asking writes what it has whatever the count).
JOURNAL_EVERY = 10
#: Tries of one journal write (a transient fault, a number another delivery took meanwhile).
JOURNAL_ATTEMPTS = 3
#: The refusal messages a journal and an :class:`Answers` keep (for the report).
ERRORS_KEPT = 5
#: The two sides that answer the golden set.
CANDIDATE = "candidate"
CHAMPION = "champion"
_SEQUENCE = re.compile(r"(\d{6})\.json")

#: The backends a model can come from (a job record's ``backend``, a champion entry's).
PIPELINE = "pipeline"
GEMINI = "gemini"


def backend_of(entry: Mapping[str, Any] | None) -> str:
    """The backend of a job record or a champion entry: its ``backend`` (or its spec's), else
    ``pipeline`` (records and champions from before the gemini backend name none)."""
    if not entry:
        return PIPELINE
    chosen = entry.get("backend") or (entry.get("spec") or {}).get("backend")
    return GEMINI if chosen == GEMINI else PIPELINE


def display_name_of(record: Mapping[str, Any]) -> str | None:
    """The display name a job's model gets (its family): the pipeline spec's
    ``model_display_name``, the gemini spec's ``tuned_model_display_name``."""
    spec = record.get("spec") or {}
    name = spec.get("model_display_name") or spec.get("tuned_model_display_name")
    return str(name) if name else None


def pipeline_serving(family_doc: Mapping[str, Any] | None) -> str | None:
    """The family's pipeline serving endpoint (``<family>-serving``): the one its record names,
    else where a ``pipeline`` champion serves; never a gemini champion's own endpoint."""
    doc = family_doc or {}
    if doc.get("endpoint"):
        return str(doc["endpoint"])
    champion = doc.get("champion")
    if champion and backend_of(champion) == PIPELINE and champion.get("endpoint"):
        return str(champion["endpoint"])
    return None


class NoGoldenSetError(PermanentError):
    """The family has no golden set and the job brings none (no eval set, no golden file)."""


class GoldenSetError(PermanentError):
    """The golden set cannot be used: invalid, unreadable or changed under its recorded hash."""


class EvaluationBudgetSpentError(RetryableError):
    """The call's time budget ran out with golden-set prompts left: their answers so far are
    recorded, and a redelivery goes on from there."""


@dataclass(frozen=True)
class GoldenSet:
    """A frozen golden set: where it is, what it holds, and why it is the family's."""

    uri: str
    sha256: str
    source: str
    inputs: tuple[str, ...]
    expected: tuple[str, ...]
    #: Where each input's last user turn begins (a ``contents`` line's user turns are joined
    #: with newlines); empty: every input is one turn (the prefix goes first).
    label_at: tuple[int, ...] = ()

    def prompts(self, prefix: str = "") -> tuple[str, ...]:
        """The inputs as a model tuned with the label task ``prefix`` is asked them: the prefix
        before the text of each one's last user turn (the inputs as they are for "")."""
        if not prefix:
            return self.inputs
        at = self.label_at or (0,) * len(self.inputs)
        return tuple(
            with_prefix(text, prefix, at=start) for text, start in zip(self.inputs, at, strict=True)
        )

    def entry(self, frozen_at: str) -> dict[str, Any]:
        """What ``models/{family}.golden`` records of it."""
        return {
            "uri": self.uri,
            "sha256": self.sha256,
            "examples": len(self.inputs),
            "source": self.source,
            "frozen_at": frozen_at,
        }


@dataclass(frozen=True)
class Answers:
    """One endpoint's answers to a golden set, in its order (None: the endpoint refused)."""

    endpoint: str
    texts: tuple[str | None, ...]
    latencies_ms: tuple[float, ...]
    #: The first refusals' messages (for the report), at most a few.
    errors: tuple[str, ...] = ()
    #: The label task prefix the prompts were sent with ("" for none).
    prompt_prefix: str = ""

    @property
    def error_count(self) -> int:
        """How many examples got no answer."""
        return sum(1 for text in self.texts if text is None)


def split_gs(uri: str) -> tuple[str, str]:
    """``gs://bucket/name`` → ``(bucket, name)``.

    Raises:
        GoldenSetError: ``uri`` is not a gs:// object URI.
    """
    if not uri.startswith("gs://") or "/" not in uri[5:]:
        raise GoldenSetError(f"{uri!r} is not a gs://bucket/object URI")
    bucket, _, name = uri[5:].partition("/")
    return bucket, name


def parse_examples(
    data: bytes, uri: str
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...]]:
    """The prompts and expected answers of a JSONL set (``input_text``/``output_text`` lines,
    or ``contents`` lines: the user turns' text joined by newlines, then the last model turn's),
    and where each prompt's last user turn begins (where a label task prefix goes).

    Raises:
        GoldenSetError: a line is not a labeled example (the set was not validated as one).
    """
    inputs: list[str] = []
    expected: list[str] = []
    label_at: list[int] = []
    for number, raw in enumerate(data.decode("utf-8-sig").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError as exc:
            raise GoldenSetError(f"{uri} line {number} is not JSON: {exc}") from None
        prompt, answer, at = _example(line)
        if prompt is None or answer is None:
            raise GoldenSetError(
                f"{uri} line {number} is not a labeled example (input_text and output_text, "
                "or contents ending with a model turn)"
            )
        inputs.append(prompt)
        expected.append(answer)
        label_at.append(at)
    if not inputs:
        raise GoldenSetError(f"{uri} holds no examples")
    return tuple(inputs), tuple(expected), tuple(label_at)


def _example(line: Any) -> tuple[str | None, str | None, int]:
    if not isinstance(line, dict):
        return None, None, 0
    if isinstance(line.get("input_text"), str):
        answer = line.get("output_text")
        return line["input_text"], answer if isinstance(answer, str) else None, 0
    contents = line.get("contents")
    if not isinstance(contents, list) or not contents:
        return None, None, 0

    def text(turn: Any) -> str:
        parts = turn.get("parts") if isinstance(turn, dict) else None
        return "".join(str(part.get("text", "")) for part in parts or [] if isinstance(part, dict))

    last = contents[-1]
    if not isinstance(last, dict) or last.get("role") != "model":
        return None, None, 0
    users = [
        text(turn)
        for turn in contents[:-1]
        if isinstance(turn, dict) and turn.get("role") == "user"
    ]
    # The last user turn's text starts after the earlier ones and their newlines.
    at = sum(len(earlier) + 1 for earlier in users[:-1])
    return "\n".join(users), text(last), at


def load_golden(entry: Mapping[str, Any], deps: Dependencies) -> GoldenSet:
    """The golden set a family records (``models/{family}.golden``), checked against its hash.

    Raises:
        GoldenSetError: it is gone, or its bytes no longer match the recorded hash.
    """
    uri = str(entry["uri"])
    bucket, name = split_gs(uri)
    try:
        data = deps.objects.read_bytes(bucket, name, limit=MAX_GOLDEN_BYTES)
    except ObjectNotFoundError as exc:
        raise GoldenSetError(f"the family's golden set {uri} is gone: {exc}") from None
    sha = hashlib.sha256(data).hexdigest()
    if sha != entry.get("sha256"):
        raise GoldenSetError(
            f"the family's golden set {uri} changed: sha256 {sha}, recorded {entry.get('sha256')}"
        )
    inputs, expected, label_at = parse_examples(data, uri)
    return GoldenSet(uri, sha, str(entry.get("source") or uri), inputs, expected, label_at)


def freeze(uri: str, source: str, deps: Dependencies, generation: int | None = None) -> GoldenSet:
    """Copy the set at ``uri`` (exactly ``generation`` when given) to its immutable,
    content-addressed place under ``golden/`` and read it.

    Raises:
        GoldenSetError: it is gone, too large or not a labeled set.
    """
    bucket, name = split_gs(uri)
    try:
        data = deps.objects.read_bytes(bucket, name, generation, limit=MAX_GOLDEN_BYTES)
    except ObjectNotFoundError as exc:
        raise GoldenSetError(f"the golden set {uri} is gone: {exc}") from None
    except ValueError as exc:
        raise GoldenSetError(str(exc)) from None
    inputs, expected, label_at = parse_examples(data, uri)
    sha = hashlib.sha256(data).hexdigest()
    frozen = f"{GOLDEN_PREFIX}{sha}.jsonl"
    # Content-addressed: an object already there holds exactly these bytes.
    with contextlib.suppress(PreconditionFailedError):
        deps.objects.write_bytes(
            bucket, frozen, data, content_type="application/jsonl", if_absent=True
        )
    return GoldenSet(f"gs://{bucket}/{frozen}", sha, source, inputs, expected, label_at)


def user_golden(record: Mapping[str, Any], deps: Dependencies) -> GoldenSet | None:
    """The user's ``datasets/<name>.golden.jsonl`` beside the job's training set, frozen; None
    when there is none.

    Raises:
        GoldenSetError: the file is there but was found invalid.
        RetryableError: it is there but not validated yet (validate_dataset is on it).
    """
    settings = deps.settings
    dataset = _dataset_record(record, deps)
    if not dataset or not dataset.get("name") or not dataset.get("bucket"):
        return None
    bucket, stem = str(dataset["bucket"]), str(dataset["name"])
    name = f"{settings.datasets_prefix}{stem}.golden.jsonl"
    info = deps.objects.find(bucket, name)
    if info is None:
        return None
    from distillery.services.datasets import dataset_id

    validated = deps.records.get(
        settings.datasets_collection, dataset_id(bucket, name, info.generation)
    )
    if validated is None or validated.get("status") not in ("valid", "invalid"):
        raise RetryableError(f"the golden set {info.uri} is not validated yet")
    if validated["status"] != "valid":
        raise GoldenSetError(
            f"the golden set {info.uri} is invalid (report {validated.get('report_uri')}): "
            "fix it and upload it again"
        )
    return freeze(
        info.uri,
        f"the user's golden set {info.uri} (generation {info.generation})",
        deps,
        info.generation,
    )


def _dataset_record(record: Mapping[str, Any], deps: Dependencies) -> dict[str, Any] | None:
    dataset_id = record.get("dataset_id") or (record.get("request") or {}).get("dataset_id")
    if not dataset_id:
        return None
    return deps.records.get(deps.settings.datasets_collection, str(dataset_id))


def golden_for(
    record: Mapping[str, Any], family_doc: Mapping[str, Any] | None, deps: Dependencies
) -> GoldenSet:
    """The golden set job ``record`` is judged on: the family's, else the user's golden file,
    else the job's own eval set (which becomes the family's when the job is crowned).

    Raises:
        NoGoldenSetError: there is none of the three.
        GoldenSetError: the one there is cannot be used.
        RetryableError: a backing service failed, or the user's golden file is being validated.
    """
    recorded = (family_doc or {}).get("golden")
    if recorded:
        return load_golden(recorded, deps)
    found = user_golden(record, deps)
    if found is not None:
        return found
    spec = record.get("spec") or {}
    # The pipeline spec's eval set, or the gemini spec's validation set (its contents-form copy).
    eval_uri = spec.get("evaluation_data_uri") or spec.get("validation_dataset_uri")
    if eval_uri:
        return freeze(str(eval_uri), f"the eval set of job {record['job_id']}", deps)
    raise NoGoldenSetError(
        "no golden set to judge the model on: the family has none, and the job has no eval set "
        "(upload datasets/<name>.eval.jsonl or datasets/<name>.golden.jsonl with the dataset)"
    )


def _asker(backend: str, deps: Dependencies) -> Callable[[str, str], str | None]:
    """How a model of ``backend`` is asked one prompt on an endpoint: its answer's text."""
    if backend == GEMINI:
        # A tuned Gemini model answers :generateContent on its own endpoint (the adapter sends
        # generationConfig.temperature 0: greedy, as PREDICT_PARAMETERS asks of :predict).
        return deps.require_tuning().generate
    endpoints = deps.require_endpoints()

    def predict(endpoint: str, prompt: str) -> str | None:
        result = endpoints.predict(endpoint, [prompt], PREDICT_PARAMETERS)
        return result.contents[0] if result.contents else None

    return predict


@dataclass
class Recorded:
    """What one side answered so far, from the golden set's first prompt on, in order (a text,
    or None: the service refused the prompt), with each answer's latency and the first
    refusals' messages: what a :class:`Journal` holds."""

    texts: list[str | None] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class Budget:
    """How long one call may ask, and for which job its answers are journaled.

    ``deadline`` is on ``deps.clock`` (None: no limit); ``limit`` says what set it (for
    messages); ``progress`` is how far each side got, ``{side: {"answered", "total"}}``.
    """

    job_id: str
    deadline: datetime | None = None
    limit: str = ""
    progress: dict[str, dict[str, int]] = field(default_factory=dict)


def answers_identity(
    endpoint: str, model: str, backend: str, golden: GoldenSet, prompt_prefix: str
) -> dict[str, Any]:
    """What a side's answers are valid for: asked anything else, it could answer otherwise."""
    return {
        "endpoint": endpoint,
        "model": model,
        "backend": backend,
        "golden_sha256": golden.sha256,
        "examples": len(golden.inputs),
        "prompt_prefix": prompt_prefix,
        "parameters": dict(PREDICT_PARAMETERS),
    }


def journal_folder(job_id: str, side: str, reports_prefix: str = "reports/") -> str:
    """Where the journals of job ``job_id``'s ``side`` are: ``reports/answers/<job_id>/<side>/``.

    Raises:
        ValueError: ``job_id`` could name another folder.
    """
    if not job_id or "/" in job_id or job_id.startswith("."):
        raise ValueError(f"not a job id: {job_id!r}")
    return f"{reports_prefix}{ANSWERS_FOLDER}{job_id}/{side}/"


class Journal:
    """One side's answers to the golden set, recorded in the bucket as they arrive.

    Each write is a new object, ``<folder><sequence:06d>.json``, created only if absent, holding
    every answer so far and ``identity`` (what they are valid for); the newest object is the
    journal, and it is used only when its identity is this one. A delivery that finds its next
    number taken (another delivery of the job wrote meanwhile) reads the newest journal and goes
    on from the longer of the two: no write ever replaces answers another delivery recorded.
    """

    def __init__(self, folder: str, identity: Mapping[str, Any], deps: Dependencies) -> None:
        self.folder = folder
        self.identity = dict(identity)
        self._deps = deps
        self._bucket = deps.settings.bucket
        #: The newest sequence number seen in the folder.
        self._sequence = 0

    @classmethod
    def of(cls, job_id: str, side: str, identity: Mapping[str, Any], deps: Dependencies) -> Journal:
        """The journal of job ``job_id``'s ``side`` for answers of ``identity``."""
        return cls(journal_folder(job_id, side, deps.settings.reports_prefix), identity, deps)

    def uri(self) -> str:
        """The gs:// URI of the journal's folder."""
        return f"gs://{self._bucket}/{self.folder}"

    def read(self) -> Recorded:
        """The answers recorded for this identity (none when the newest journal is another's).

        Raises:
            RetryableError: storage failed.
        """
        sequence, found = self._newest()
        self._sequence = sequence
        return found or Recorded()

    def write(self, answers: Recorded) -> Recorded:
        """Record ``answers`` as the journal; what it then holds: ``answers``, or the longer
        answers another delivery of the job recorded meanwhile for the same identity.

        Raises:
            RetryableError: storage kept failing, or other deliveries kept writing first.
        """
        for attempt in range(1, JOURNAL_ATTEMPTS + 1):
            number = self._sequence + 1
            try:
                self._deps.objects.write_bytes(
                    self._bucket,
                    self._name(number),
                    self._document(answers),
                    content_type="application/json",
                    if_absent=True,
                )
            except PreconditionFailedError:
                # Another delivery wrote this number (or this one did, its answer lost).
                try:
                    newest, theirs = self._newest()
                except RetryableError:
                    if attempt == JOURNAL_ATTEMPTS:
                        raise
                    continue
                self._sequence = max(newest, number)
                if theirs is not None and len(theirs.texts) >= len(answers.texts):
                    return theirs
            except RetryableError:
                if attempt == JOURNAL_ATTEMPTS:
                    raise
                time.sleep(0.1 * attempt)
            else:
                self._sequence = number
                return answers
        raise ContentionError(f"other deliveries kept writing the journal {self.uri()} first")

    def _name(self, number: int) -> str:
        return f"{self.folder}{number:06d}.json"

    def _document(self, answers: Recorded) -> bytes:
        document = {
            "identity": self.identity,
            "answered": len(answers.texts),
            "texts": answers.texts,
            "latencies_ms": answers.latencies_ms,
            "errors": answers.errors,
            "recorded_at": self._deps.clock().isoformat(),
        }
        return json.dumps(document, sort_keys=True).encode()

    def _newest(self) -> tuple[int, Recorded | None]:
        """The newest sequence number in the folder (0: none) and its answers, when it is a
        journal of this identity."""
        numbers = [
            int(match.group(1))
            for name in self._deps.objects.list_names(self._bucket, self.folder)
            if (match := _SEQUENCE.fullmatch(name[len(self.folder) :]))
        ]
        if not numbers:
            return 0, None
        newest = max(numbers)
        try:
            data = self._deps.objects.read_bytes(
                self._bucket, self._name(newest), limit=MAX_GOLDEN_BYTES
            )
        except (ObjectNotFoundError, ValueError):
            return newest, None
        return newest, self._parse(data)

    def _parse(self, data: bytes) -> Recorded | None:
        try:
            document = json.loads(data)
        except ValueError:
            return None
        if not isinstance(document, dict) or document.get("identity") != self.identity:
            return None
        texts, latencies = document.get("texts"), document.get("latencies_ms")
        errors = document.get("errors") or []
        if (
            not isinstance(texts, list)
            or not isinstance(latencies, list)
            or not isinstance(errors, list)
            or len(texts) != len(latencies)
            or len(texts) > int(self.identity.get("examples") or 0)
            or not all(text is None or isinstance(text, str) for text in texts)
            or not all(isinstance(ms, int | float) and not isinstance(ms, bool) for ms in latencies)
        ):
            return None
        return Recorded(list(texts), [float(ms) for ms in latencies], [str(e) for e in errors])


def _ask_one(
    answer: Callable[[str, str], str | None], endpoint: str, prompt: str
) -> tuple[str | None, float, str | None]:
    """One prompt's answer (None: refused), its latency, and the refusal's message.

    Raises:
        ObjectNotFoundError: the endpoint is gone.
        RetryableError: the service did not answer after :data:`PROMPT_ATTEMPTS` tries.
    """
    for attempt in range(1, PROMPT_ATTEMPTS + 1):
        started = time.perf_counter()
        try:
            text = answer(endpoint, prompt)
        except RequestRejectedError as exc:
            return None, (time.perf_counter() - started) * 1000, str(exc)
        except RetryableError:
            if attempt == PROMPT_ATTEMPTS:
                raise
            time.sleep(0.2 * attempt)
            continue
        return text, (time.perf_counter() - started) * 1000, None
    raise AssertionError("unreachable")  # pragma: no cover


def ask(
    endpoint: str,
    prompts: Sequence[str],
    deps: Dependencies,
    *,
    backend: str = PIPELINE,
    journal: Journal | None = None,
    budget: Budget | None = None,
    side: str = CANDIDATE,
    who: str = "the model",
) -> Answers:
    """``endpoint``'s answer to every prompt, one request each: through ``:predict`` for a
    ``pipeline`` model, through ``:generateContent`` for a ``gemini`` one.

    With a ``journal``, the answers it holds are not asked again, and the answers are recorded
    in it every :data:`JOURNAL_EVERY` new ones and when the call stops asking. With a
    ``budget``, no prompt is asked once its deadline has passed; how far ``side`` got is left in
    its ``progress``.

    Raises:
        EvaluationBudgetSpentError: the budget ran out with prompts left (their answers so far
            are recorded).
        ObjectNotFoundError: the endpoint is gone.
        RetryableError: the service did not answer a prompt after :data:`PROMPT_ATTEMPTS` tries,
            or the journal could not be read, or written when the budget ran out.
        ConfigurationError: the function has no client for that backend's endpoints.
    """
    answer = _asker(backend, deps)
    done = journal.read() if journal is not None else Recorded()
    total = len(prompts)
    deadline = budget.deadline if budget is not None else None
    #: Answers not in the journal yet, and answers since the last try to write it.
    unrecorded = since_write = 0

    def note_progress() -> None:
        if budget is not None:
            budget.progress[side] = {"answered": len(done.texts), "total": total}

    def record(*, required: bool) -> None:
        """Write the answers not in the journal yet; a fault surfaces if ``required``, else it
        is logged and the answers are kept in hand for the next write."""
        nonlocal done, unrecorded
        if journal is None or not unrecorded:
            return
        try:
            done = journal.write(done)
        except RetryableError as exc:
            if required:
                raise
            logger.warning("the answers of %s could not be recorded: %s", who, exc)
        else:
            unrecorded = 0

    while len(done.texts) < total:
        if deadline is not None and deps.clock() >= deadline:
            note_progress()
            record(required=True)  # A fault here surfaces: the event is redelivered.
            note_progress()
            if len(done.texts) >= total:
                continue  # Another delivery of the job recorded the rest meanwhile.
            raise EvaluationBudgetSpentError(
                f"evaluated {len(done.texts)} of {total} golden-set prompts of {who} before "
                f"the call's budget ran out ({budget.limit if budget else 'its deadline'}); "
                "a redelivery goes on from there"
            )
        try:
            text, latency, error = _ask_one(answer, endpoint, prompts[len(done.texts)])
        except RetryableError:
            # The call stops asking: what it has is recorded, if storage lets it.
            note_progress()
            record(required=False)
            raise
        done.texts.append(text)
        done.latencies_ms.append(latency)
        if error is not None and len(done.errors) < ERRORS_KEPT:
            done.errors.append(error)
        unrecorded += 1
        since_write += 1
        if journal is not None and since_write >= JOURNAL_EVERY and len(done.texts) < total:
            since_write = 0
            record(required=False)  # Kept in hand on a fault: the next write has these too.
    # Every answer is in hand: the decision does not need the journal, a later call would.
    record(required=False)
    note_progress()
    return Answers(
        endpoint, tuple(done.texts), tuple(done.latencies_ms), tuple(done.errors[:ERRORS_KEPT])
    )


def ask_golden(
    endpoint: str,
    golden: GoldenSet,
    deps: Dependencies,
    *,
    backend: str = PIPELINE,
    prompt_prefix: str = "",
    budget: Budget | None = None,
    side: str = CANDIDATE,
    model: str = "",
    who: str = "the candidate",
) -> Answers:
    """``endpoint``'s answers to ``golden``, each prompt sent as the label task of
    ``prompt_prefix`` (see :meth:`GoldenSet.prompts`), as :func:`ask` asks.

    With a ``budget``, ``side``'s answers (``model``'s) are journaled for the budget's job and
    resumed from its journal, and no prompt is asked past the budget's deadline.

    Raises:
        EvaluationBudgetSpentError: the budget ran out with prompts left (answers recorded).
        ObjectNotFoundError: the endpoint is gone.
        RetryableError: the service did not answer a prompt after :data:`PROMPT_ATTEMPTS` tries.
        ConfigurationError: the function has no client for that backend's endpoints.
    """
    journal = (
        Journal.of(
            budget.job_id,
            side,
            answers_identity(endpoint, model, backend, golden, prompt_prefix),
            deps,
        )
        if budget is not None
        else None
    )
    answers = ask(
        endpoint,
        golden.prompts(prompt_prefix),
        deps,
        backend=backend,
        journal=journal,
        budget=budget,
        side=side,
        who=who,
    )
    return Answers(
        answers.endpoint, answers.texts, answers.latencies_ms, answers.errors, prompt_prefix
    )


def record_progress(golden: GoldenSet, budget: Budget, deps: Dependencies) -> None:
    """Write how far each side got on the budget's job (``evaluation_progress``), unless the job
    is decided already.

    Raises:
        RetryableError: the job store failed.
    """
    at = deps.clock().isoformat()
    progress: dict[str, Any] = {
        "golden_sha256": golden.sha256,
        "examples": len(golden.inputs),
        **{side: dict(counts) for side, counts in budget.progress.items()},
        "journals": (
            f"gs://{deps.settings.bucket}/{deps.settings.reports_prefix}{ANSWERS_FOLDER}"
            f"{budget.job_id}/"
        ),
        "updated_at": at,
    }

    def mutate(current: dict[str, Any] | None) -> dict[str, Any] | None:
        if current is None or current.get("promotion"):
            return None
        current["evaluation_progress"] = progress
        return current

    deps.records.transact(deps.settings.jobs_collection, budget.job_id, mutate)


def champion_answers(
    champion: Mapping[str, Any],
    serving: str,
    golden: GoldenSet,
    deps: Dependencies,
    *,
    budget: Budget | None = None,
) -> Answers:
    """The champion's answers to ``golden``: asked where it serves when it receives all of the
    endpoint's traffic; during a canary (the endpoint would answer with either model), the
    answers its own decision recorded on this golden set.

    A ``gemini`` champion serves on the endpoint its tuning job deployed it on, which no other
    model shares and no canary splits (a tuned Gemini model is deployed to an endpoint of its
    own: cloud.google.com/vertex-ai/generative-ai/docs/deploy/overview, "Deploy a tuned model"):
    it receives all of that endpoint's traffic and is asked live, through ``:generateContent``.

    It is asked with the prefix its entry records (``prompt_prefix``: a model tuned step-by-step
    answers the label task); recorded answers are used only if they were asked with that prefix.
    With a ``budget``, its answers are journaled (side ``champion``) as :func:`ask_golden` does.

    Raises:
        GoldenSetError: it cannot answer (its endpoint is gone or no longer serves it, or a
            canary runs and its answers on this golden set were never recorded).
        EvaluationBudgetSpentError: the budget ran out with prompts left (answers recorded).
        RetryableError: a backing service failed.
    """
    backend = backend_of(champion)
    prefix = champion_prefix(champion)
    where = str(champion.get("endpoint") or ("" if backend == GEMINI else serving))
    who = f"the champion (job {champion.get('job_id')})"
    endpoints = deps.require_endpoints()
    try:
        info = endpoints.get_endpoint(where)
    except ObjectNotFoundError as exc:
        raise GoldenSetError(
            f"{who} cannot answer the golden set: its endpoint {where} is gone ({exc}); "
            "roll back or restore it first"
        ) from None
    deployed = info.deployed_id_of(str(champion.get("model") or ""))
    if backend == GEMINI and deployed is None:
        raise GoldenSetError(
            f"{who} cannot answer the golden set: its own endpoint {where} no longer serves its "
            f"model {champion.get('model')}; roll back first"
        )
    if deployed is not None and (backend == GEMINI or info.traffic_split.get(deployed, 0) == 100):
        try:
            return ask_golden(
                where,
                golden,
                deps,
                backend=backend,
                prompt_prefix=prefix,
                budget=budget,
                side=CHAMPION,
                model=str(champion.get("model") or ""),
                who=who,
            )
        except ObjectNotFoundError as exc:
            raise GoldenSetError(f"{who} cannot answer the golden set: {exc}") from None
    stored = _recorded_answers(str(champion.get("job_id")), golden.sha256, prefix, deps)
    if stored is None:
        raise GoldenSetError(
            f"{who} does not receive all the traffic of {where} (a canary shares it) and its "
            f"answers on this golden set, asked with the prefix {prefix!r}, were never recorded: "
            "finish the canary (promote or roll back) first"
        )
    if budget is not None:
        budget.progress[CHAMPION] = {"answered": len(stored), "total": len(golden.inputs)}
    return Answers(where, tuple(stored), (), prompt_prefix=prefix)


def _recorded_answers(
    job_id: str, golden_sha256: str, prefix: str, deps: Dependencies
) -> list[str | None] | None:
    """The answers job ``job_id``'s model gave to the golden set ``golden_sha256`` when it was
    judged (from its decision report), or None; only if it was asked with ``prefix`` then
    (reports from before the prefix was recorded asked with none)."""
    from distillery.reports import decision_report_paths

    json_name, _ = decision_report_paths(job_id, deps.settings.reports_prefix)
    try:
        report = json.loads(
            deps.objects.read_bytes(deps.settings.bucket, json_name, limit=MAX_GOLDEN_BYTES)
        )
    except (ObjectNotFoundError, ValueError):
        return None
    answers = report.get("answers") if isinstance(report, dict) else None
    if not isinstance(answers, dict) or answers.get("golden_sha256") != golden_sha256:
        return None
    if (answers.get("candidate_prompt_prefix") or "") != prefix:
        return None
    texts = answers.get("candidate")
    return list(texts) if isinstance(texts, list) else None


def disagreements(
    golden: GoldenSet, candidate: Answers, champion: Answers | None
) -> list[dict[str, Any]]:
    """Up to :data:`DISAGREEMENTS_SHOWN` examples where the two models answer differently (with
    no champion: where the candidate is wrong)."""
    shown: list[dict[str, Any]] = []
    for index, (prompt, expected) in enumerate(zip(golden.inputs, golden.expected, strict=True)):
        mine = candidate.texts[index]
        theirs = champion.texts[index] if champion is not None else None
        differs = mine != theirs if champion is not None else (mine or "").strip() != expected
        if not differs:
            continue
        shown.append(
            {
                "index": index,
                "input": prompt,
                "expected": expected,
                "candidate": mine,
                "champion": theirs,
            }
        )
        if len(shown) == DISAGREEMENTS_SHOWN:
            break
    return shown


def side(
    who: Mapping[str, Any], answers: Answers, scores: Any, latency: Mapping[str, float]
) -> dict[str, Any]:
    """One model's column of the report (``scores``: a :class:`distillery.evaluation.Scores`)."""
    return {
        "job_id": who.get("job_id"),
        "model": who.get("model"),
        "endpoint": answers.endpoint,
        "metrics": {k: float(v) for k, v in scores.metrics.items()},
        "per_class": {
            label: {"accuracy": c.accuracy, "f1": c.f1, "support": c.support}
            for label, c in scores.per_class.items()
        },
        "latency_ms": dict(latency),
        "errors": answers.error_count,
        # How it was asked: a step-by-step model answers the label task (see labeling._prompt).
        "prompt_prefix": answers.prompt_prefix,
    }


def curves_of(record: Mapping[str, Any]) -> dict[str, list[list[float]]]:
    """The job's training curves as the report draws them, ``{tag: [[step, value], ...]}``
    (the record keeps ``{tag: {"steps": [...], "values": [...]}}``: Firestore holds no arrays in
    arrays)."""
    curves: dict[str, list[list[float]]] = {}
    for tag, curve in (record.get("training_curves") or {}).items():
        if isinstance(curve, Mapping):
            steps, values = curve.get("steps") or [], curve.get("values") or []
            curves[str(tag)] = [[float(s), float(v)] for s, v in zip(steps, values, strict=False)]
    return curves


def cost_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """The cost figures the job's plan recorded."""
    spec = record.get("spec") or {}
    figures = {
        "accelerator": spec.get("accelerator_type"),
        "accelerator_count": spec.get("accelerator_count"),
        "accelerator_hours": record.get("estimated_accelerator_hours")
        or spec.get("estimated_accelerator_hours"),
        "train_steps": spec.get("train_steps"),
        "examples_seen": spec.get("examples_seen"),
        "epochs": spec.get("epochs"),
    }
    return {k: v for k, v in figures.items() if v is not None}


def write_report(report: Mapping[str, Any], bucket: str, deps: Dependencies) -> dict[str, str]:
    """Store ``report`` as JSON and as an HTML page; their gs:// URIs (``json``, ``html``).

    A report that cannot be rendered still leaves its JSON (the decision does not wait on a
    chart); the failure is logged.
    """
    from distillery.reports import decision_report_paths, render_decision_html

    json_name, html_name = decision_report_paths(
        str(report["job_id"]), deps.settings.reports_prefix
    )
    deps.objects.write_bytes(
        bucket,
        json_name,
        json.dumps(report, indent=2, sort_keys=True).encode(),
        content_type="application/json",
    )
    uris = {"json": f"gs://{bucket}/{json_name}"}
    try:
        page = render_decision_html(report)
    except Exception:  # A chart must never lose the decision: the JSON is written.
        logger.exception("the decision report of job %s could not be rendered", report["job_id"])
        return uris
    deps.objects.write_bytes(
        bucket, html_name, page.encode(), content_type="text/html; charset=utf-8"
    )
    uris["html"] = f"gs://{bucket}/{html_name}"
    return uris


@dataclass(frozen=True)
class Evaluated:
    """What the golden-set evaluation of one candidate found."""

    #: Every rule the golden-set evaluation failed (or why it could not be run).
    failures: tuple[str, ...]
    #: What the job's decision records of it.
    summary: Mapping[str, Any]
    #: The endpoint the job's own deployment serves the candidate from (None: none found).
    candidate_endpoint: str | None = None
    #: The decision report's figures (without the decision and its reasons); None when nothing
    #: was measured.
    report: Mapping[str, Any] | None = None


def find_candidate_endpoint(
    record: Mapping[str, Any], serving: str | None, deps: Dependencies
) -> str | None:
    """The endpoint the job's pipeline deployed its model on, named after the model's display
    name (SPEC "After the job"); never the family's serving endpoint ``serving``.

    A ``gemini`` job's is the one its tuning job recorded (``tunedModel.endpoint``, the job's
    ``candidate_endpoint``) while it still serves the model: the service deploys a tuned model
    there itself, so no endpoint is searched for by name.

    Raises:
        RetryableError: a backing service failed.
    """
    from distillery.core.ports import location_of

    endpoints = deps.require_endpoints()
    model = str(record["model"])
    recorded = record.get("candidate_endpoint")
    if recorded and recorded != serving:
        try:
            if endpoints.get_endpoint(str(recorded)).deployed_id_of(model) is not None:
                return str(recorded)
        except ObjectNotFoundError:
            pass
    if backend_of(record) == GEMINI:
        return None
    display = display_name_of(record)
    if not display:
        return None
    location = location_of(model) or deps.settings.region
    for info in endpoints.list_endpoints(str(display), location):
        if info.name != serving and info.deployed_id_of(model) is not None:
            return info.name
    return None


def evaluate(
    record: Mapping[str, Any],
    family: str,
    champion: Mapping[str, Any] | None,
    rule: Any,
    deps: Dependencies,
    *,
    budget: Budget | None = None,
) -> Evaluated:
    """Have the candidate and the ``champion`` answer the family's golden set and judge them.

    ``rule`` is the :class:`distillery.evaluation.EvaluationThresholds` of the job. With a
    ``budget`` (the call's), both sides' answers are journaled and resumed (see :class:`Journal`)
    and no prompt is asked past its deadline; when it runs out, how far each side got is written
    on the job (``evaluation_progress``) before the error is raised.

    Raises:
        EvaluationBudgetSpentError: the budget ran out with prompts left (answers recorded).
        RetryableError: a backing service failed, or the user's golden file is being validated.
    """
    from distillery.evaluation import TASKS, infer_task, judge, latency_summary, score

    settings = deps.settings
    family_doc = deps.records.get(settings.models_collection, family) or {}
    serving = pipeline_serving(family_doc) or (
        champion.get("endpoint") if champion and backend_of(champion) == PIPELINE else None
    )
    model = str(record["model"])
    backend = backend_of(record)
    endpoint = find_candidate_endpoint(record, serving, deps)
    display = display_name_of(record)
    if endpoint is None:
        where = (
            f"its tuning job deployed it on {record.get('candidate_endpoint')}"
            if backend == GEMINI
            else f"its pipeline deploys it on an endpoint named {display!r}"
        )
        return Evaluated(
            (f"no endpoint serves the job's model {model} ({where}): it cannot be evaluated",),
            {"error": "no candidate endpoint"},
        )
    try:
        golden = golden_for(record, family_doc, deps)
    except NoGoldenSetError as exc:
        if settings.promote_without_eval and champion is None:
            note = f"{exc}; promoted without evaluation (DISTILLERY_PROMOTE_WITHOUT_EVAL)"
            return Evaluated((), {"skipped": note}, endpoint)
        return Evaluated((str(exc),), {"error": str(exc)}, endpoint)
    except GoldenSetError as exc:
        return Evaluated((str(exc),), {"error": str(exc)}, endpoint)

    configured = (record.get("spec") or {}).get("task")
    task = infer_task(golden.inputs, golden.expected, configured if configured in TASKS else None)
    prefix = label_task_prefix(record)
    try:
        mine = ask_golden(
            endpoint,
            golden,
            deps,
            backend=backend,
            prompt_prefix=prefix,
            budget=budget,
            side=CANDIDATE,
            model=model,
            who="the candidate",
        )
    except EvaluationBudgetSpentError:
        if budget is not None:
            record_progress(golden, budget, deps)
        raise
    except ObjectNotFoundError as exc:
        return Evaluated(
            (f"the candidate's endpoint {endpoint} is gone: {exc}",), {"error": str(exc)}
        )
    if mine.error_count == len(golden.inputs):
        problem = (
            f"the candidate's endpoint {endpoint} answered none of the golden set's "
            f"{len(golden.inputs)} examples (first error: {mine.errors[0] if mine.errors else '?'})"
        )
        return Evaluated((problem,), {"error": problem}, endpoint)
    my_scores = score(task.kind, golden.expected, mine.texts)
    theirs: Answers | None = None
    their_scores = None
    if champion:
        try:
            theirs = champion_answers(champion, str(serving or ""), golden, deps, budget=budget)
        except GoldenSetError as exc:
            return Evaluated((str(exc),), {"error": str(exc)}, endpoint)
        except EvaluationBudgetSpentError:
            if budget is not None:
                record_progress(golden, budget, deps)
            raise
        their_scores = score(task.kind, golden.expected, theirs.texts)
    if budget is not None and record.get("evaluation_progress"):
        # An earlier call was interrupted: its readers see the evaluation finished.
        record_progress(golden, budget, deps)
    judgement = judge(my_scores, their_scores, rule)
    frozen_at = deps.clock().isoformat()
    golden_entry = golden.entry(frozen_at)
    if family_doc.get("golden"):
        golden_entry = dict(family_doc["golden"])
    interval = judgement.interval
    comparison = (
        {
            "mean_difference": interval.mean_difference,
            "low": interval.low,
            "high": interval.high,
            "confidence": interval.confidence,
            "resamples": interval.resamples,
            "seed": interval.seed,
        }
        if interval is not None
        else None
    )
    mine_side = side(
        {"job_id": record["job_id"], "model": model},
        mine,
        my_scores,
        latency_summary(mine.latencies_ms),
    )
    their_side = (
        side(champion, theirs, their_scores, latency_summary(theirs.latencies_ms))
        if champion and theirs is not None and their_scores is not None
        else None
    )
    summary = {
        "task": task.kind,
        "task_how": task.how,
        "golden": golden_entry,
        "primary_metric": my_scores.primary,
        "candidate": mine_side["metrics"],
        "candidate_errors": mine.error_count,
        "candidate_prompt_prefix": mine.prompt_prefix,
        "champion": their_side["metrics"] if their_side else None,
        "champion_prompt_prefix": theirs.prompt_prefix if theirs is not None else None,
        "comparison": comparison,
        "class_changes": dict(judgement.class_changes),
    }
    report = {
        "job_id": record["job_id"],
        "family": family,
        "task": {"kind": task.kind, "how": task.how},
        "golden_set": {k: golden_entry[k] for k in ("uri", "sha256", "examples", "source")},
        "primary_metric": my_scores.primary,
        "candidate": mine_side,
        "champion": their_side,
        "comparison": comparison,
        "class_changes": dict(judgement.class_changes),
        "service_metrics": dict(record.get("metrics") or {}),
        "training_curves": curves_of(record),
        "cost": cost_of(record),
        "disagreements": disagreements(golden, mine, theirs),
        # Every answer, in the golden set's order: a champion's answers are read back from its
        # own report while a canary shares its endpoint's traffic.
        "answers": {
            "golden_sha256": golden.sha256,
            "candidate": list(mine.texts),
            "champion": list(theirs.texts) if theirs is not None else None,
            # What each side was sent before every input (a champion's recorded answers are
            # reused only when it was asked with its own prefix then).
            "candidate_prompt_prefix": mine.prompt_prefix,
            "champion_prompt_prefix": theirs.prompt_prefix if theirs is not None else None,
        },
    }
    return Evaluated(tuple(judgement.failures), summary, endpoint, report)
