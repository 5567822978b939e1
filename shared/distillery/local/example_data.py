"""A generator of small instruction-style datasets, for the demo, the tests and the benchmarks.

Nothing can be downloaded here, so the example task is generated: classify a short news-style
sentence into one of four topics. Every prompt carries the task instructions, as SPEC.md
recommends ("Classify the following text into one of the following classes: [...] Text: ...").
The output is deterministic for a seed, and the eval set never repeats a training prompt.

Each example can also carry a short step-by-step rationale that leads to its label (which words
of the text point to the class, and why): what a local teacher is trained on so that it explains
(:mod:`distillery.local.teachers`), and what the step-by-step benchmark's students learn from.

A second task, :func:`generate_rumours`, is one where a rationale can help a small student: the
label depends on a rule over a cue. Each sentence mixes a subject of one class with an event of
another, and ends with a phrase that makes it a rumour (then the subject's class is the label)
or a confirmed report (then the event's). The rationale names the cue and the words that decide.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CLASSES: tuple[str, ...] = ("business", "entertainment", "sports", "science")

INSTRUCTION = (
    f"Classify the following text into one of the following classes: [{', '.join(CLASSES)}] Text: "
)

_SUBJECTS: dict[str, tuple[str, ...]] = {
    "business": (
        "the bank",
        "shareholders",
        "the retailer",
        "investors",
        "the startup",
        "the central bank",
        "the airline",
        "analysts",
        "the carmaker",
        "the exporter",
    ),
    "entertainment": (
        "the director",
        "the band",
        "the actress",
        "fans",
        "the studio",
        "the singer",
        "critics",
        "the streaming service",
        "the comedian",
        "the festival",
    ),
    "sports": (
        "the striker",
        "the coach",
        "the home team",
        "the champion",
        "the goalkeeper",
        "the league",
        "the sprinter",
        "the captain",
        "the referee",
        "the club",
    ),
    "science": (
        "researchers",
        "the telescope",
        "the lab",
        "astronomers",
        "the probe",
        "biologists",
        "the physicists",
        "the survey team",
        "chemists",
        "the rover",
    ),
}
_EVENTS: dict[str, tuple[str, ...]] = {
    "business": (
        "reported record quarterly profits",
        "cut its interest rate forecast",
        "announced a merger worth billions",
        "saw its shares tumble on weak sales",
        "raised prices after supply costs rose",
        "closed a new funding round",
        "posted a surprise loss",
        "expanded into three new markets",
    ),
    "entertainment": (
        "premiered a new film at the festival",
        "released a chart-topping album",
        "won an award for best performance",
        "announced a world tour",
        "signed on for a sequel",
        "broke box office records",
        "launched a new television series",
        "sold out the concert hall",
    ),
    "sports": (
        "scored twice in the final minutes",
        "won the championship match",
        "signed a three-year contract",
        "set a new world record",
        "was injured during training",
        "lost the derby on penalties",
        "qualified for the tournament",
        "celebrated a comeback victory",
    ),
    "science": (
        "discovered a new exoplanet",
        "published a study on gene editing",
        "detected gravitational waves",
        "mapped the ocean floor",
        "sequenced an ancient genome",
        "measured a rare particle decay",
        "found water ice on the moon",
        "observed a distant supernova",
    ),
}
_TIMES = (
    "on Monday",
    "this week",
    "last night",
    "after months of work",
    "in a statement",
    "earlier today",
    "over the weekend",
    "according to reports",
)


#: The rumour task's instructions: the rule is part of the task, as SPEC.md asks.
RUMOUR_INSTRUCTION = (
    f"Classify the following text into one of the following classes: [{', '.join(CLASSES)}]. "
    "Rule: a rumour is classified by its subject, a confirmed report by its event. Text: "
)
#: Closing phrases that make a sentence a rumour, or a confirmed report.
_RUMOUR_CUES = (
    "according to rumours",
    "if insiders are to be believed",
    "say unnamed sources",
    "in an unconfirmed report",
)
_CONFIRMED_CUES = ("on Monday", "this week", "last night", "in a statement")


@dataclass(frozen=True)
class Example:
    """One dataset line, and the rationale that leads to its label when one was asked for."""

    input_text: str
    output_text: str | None
    rationale: str | None = None

    def to_json(self) -> str:
        """The example as one JSONL line (without the newline); ``rationale`` only when set
        (it is not a dataset field: the validator ignores it with a warning)."""
        line = {"input_text": self.input_text}
        if self.output_text is not None:
            line["output_text"] = self.output_text
        if self.rationale is not None:
            line["rationale"] = self.rationale
        return json.dumps(line, ensure_ascii=False)


@dataclass(frozen=True)
class _Sentence:
    text: str
    label: str
    rationale: str


def _news(rng: random.Random) -> Iterator[_Sentence]:
    # The draws stay in this order (label, subject, event, time): the seed's datasets depend on it.
    while True:
        label = rng.choice(CLASSES)
        subject, event = rng.choice(_SUBJECTS[label]), rng.choice(_EVENTS[label])
        text = f"{subject.capitalize()} {event} {rng.choice(_TIMES)}."
        rationale = (
            f'The subject "{subject}" and the event "{event}" are {label} words, '
            f"so the text is about {label}."
        )
        yield _Sentence(text, label, rationale)


def _rumours(rng: random.Random) -> Iterator[_Sentence]:
    while True:
        rumour = rng.random() < 0.5
        subject_class = rng.choice(CLASSES)
        event_class = rng.choice([c for c in CLASSES if c != subject_class])
        subject = rng.choice(_SUBJECTS[subject_class])
        event = rng.choice(_EVENTS[event_class])
        cue = rng.choice(_RUMOUR_CUES if rumour else _CONFIRMED_CUES)
        text = f"{subject.capitalize()} {event} {cue}."
        if rumour:
            label = subject_class
            rationale = (
                f'"{cue}" makes it a rumour, so the subject decides: "{subject}" is {label} news.'
            )
        else:
            label = event_class
            rationale = (
                f'"{cue}" makes it a confirmed report, so the event decides: '
                f'"{event}" is {label} news.'
            )
        yield _Sentence(text, label, rationale)


def _split(
    sentences: Iterator[_Sentence],
    instruction: str,
    capacity: int,
    train_size: int,
    eval_size: int,
    *,
    labeled: bool,
    rationales: bool,
) -> tuple[list[Example], list[Example]]:
    if train_size + eval_size > capacity:
        raise ValueError(f"at most {capacity} unique examples can be generated")
    seen: set[str] = set()
    picked: list[_Sentence] = []
    for sentence in sentences:
        if sentence.text in seen:
            continue
        seen.add(sentence.text)
        picked.append(sentence)
        if len(picked) == train_size + eval_size:
            break

    def example(sentence: _Sentence, with_label: bool) -> Example:
        return Example(
            instruction + sentence.text,
            sentence.label if with_label else None,
            sentence.rationale if rationales and with_label else None,
        )

    train = [example(s, labeled) for s in picked[:train_size]]
    evaluation = [example(s, True) for s in picked[train_size:]]
    return train, evaluation


def generate(
    train_size: int = 1000,
    eval_size: int = 100,
    *,
    seed: int = 7,
    labeled: bool = True,
    rationales: bool = False,
) -> tuple[list[Example], list[Example]]:
    """A training set and an eval set with no prompt in common (the eval set is always labeled).

    With ``rationales``, every labeled example also carries its rationale; the prompts and
    labels are the same as without.

    Raises:
        ValueError: more unique examples were asked for than the templates can make.
    """
    capacity = sum(len(_SUBJECTS[c]) * len(_EVENTS[c]) for c in CLASSES) * len(_TIMES)
    return _split(
        _news(random.Random(seed)),
        INSTRUCTION,
        capacity,
        train_size,
        eval_size,
        labeled=labeled,
        rationales=rationales,
    )


def generate_rumours(
    train_size: int = 1000, eval_size: int = 200, *, seed: int = 7, rationales: bool = False
) -> tuple[list[Example], list[Example]]:
    """The rumour task (see the module docs): labeled training and eval sets with no prompt in
    common; with ``rationales``, each example carries the rationale that names its cue.

    Raises:
        ValueError: more unique examples were asked for than the templates can make.
    """
    pairs = sum(len(_SUBJECTS[s]) * len(_EVENTS[e]) for s in CLASSES for e in CLASSES if s != e)
    capacity = pairs * (len(_RUMOUR_CUES) + len(_CONFIRMED_CUES))
    return _split(
        _rumours(random.Random(seed)),
        RUMOUR_INSTRUCTION,
        capacity,
        train_size,
        eval_size,
        labeled=True,
        rationales=rationales,
    )


def write_jsonl(path: Path, examples: list[Example]) -> Path:
    """Write ``examples`` as JSON Lines to ``path``; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(e.to_json() + "\n" for e in examples), encoding="utf-8")
    return path
