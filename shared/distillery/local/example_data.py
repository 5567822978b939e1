"""A generator of small instruction-style datasets, for the demo, the tests and the benchmarks.

Nothing can be downloaded here, so the example task is generated: classify a short news-style
sentence into one of four topics. Every prompt carries the task instructions, as SPEC.md
recommends ("Classify the following text into one of the following classes: [...] Text: ...").
The output is deterministic for a seed, and the eval set never repeats a training prompt.
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


@dataclass(frozen=True)
class Example:
    """One dataset line."""

    input_text: str
    output_text: str | None

    def to_json(self) -> str:
        """The example as one JSONL line (without the newline)."""
        line = {"input_text": self.input_text}
        if self.output_text is not None:
            line["output_text"] = self.output_text
        return json.dumps(line, ensure_ascii=False)


def _sentences(rng: random.Random) -> Iterator[tuple[str, str]]:
    while True:
        label = rng.choice(CLASSES)
        sentence = (
            f"{rng.choice(_SUBJECTS[label]).capitalize()} {rng.choice(_EVENTS[label])} "
            f"{rng.choice(_TIMES)}."
        )
        yield sentence, label


def generate(
    train_size: int = 1000, eval_size: int = 100, *, seed: int = 7, labeled: bool = True
) -> tuple[list[Example], list[Example]]:
    """A training set and an eval set with no prompt in common (the eval set is always labeled).

    Raises:
        ValueError: more unique examples were asked for than the templates can make.
    """
    capacity = sum(len(_SUBJECTS[c]) * len(_EVENTS[c]) for c in CLASSES) * len(_TIMES)
    if train_size + eval_size > capacity:
        raise ValueError(f"at most {capacity} unique examples can be generated")
    rng = random.Random(seed)
    seen: set[str] = set()
    pairs: list[tuple[str, str]] = []
    for sentence, label in _sentences(rng):
        if sentence in seen:
            continue
        seen.add(sentence)
        pairs.append((INSTRUCTION + sentence, label))
        if len(pairs) == train_size + eval_size:
            break
    train = [Example(text, label if labeled else None) for text, label in pairs[:train_size]]
    evaluation = [Example(text, label) for text, label in pairs[train_size:]]
    return train, evaluation


def write_jsonl(path: Path, examples: list[Example]) -> Path:
    """Write ``examples`` as JSON Lines to ``path``; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(e.to_json() + "\n" for e in examples), encoding="utf-8")
    return path
