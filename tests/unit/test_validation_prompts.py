"""The instruction and prompt-format heuristics."""

from __future__ import annotations

import pytest

from distillery.validation._prompts import (
    HEAD_CHARS,
    MAX_MARKERS,
    format_signature,
    has_instructions,
    prompt_markers,
)


@pytest.mark.parametrize(
    ("text", "markers"),
    [
        ("question: How many? context: The U.S. state", ("question", "context")),
        (
            "Classify the following text into one of the following classes: "
            "[business, entertainment] Text: 5 stocks to buy now",
            ("text",),
        ),
        ("### Input:\nfoo\n**Answer:** bar", ("input", "answer")),
        ("Intro. Input Text:  x", ("input text",)),
        ("Review title: good. 3 items: x", ("review title",)),
        ("QUESTION: a\nQuestion: b", ("question",)),
    ],
)
def test_prompt_markers_finds_labels_at_boundaries(text: str, markers: tuple[str, ...]) -> None:
    assert prompt_markers(text) == markers


@pytest.mark.parametrize(
    "text",
    [
        "Meet at 10:30 and see https://example.com/a",
        "Note that the ratio: 5",  # more than three words before the colon
        "the value is 4:3",
        "a" * 100 + " question: x",  # no boundary before the label
        "",
    ],
)
def test_prompt_markers_ignores_non_markers(text: str) -> None:
    assert prompt_markers(text) == ()


def test_prompt_markers_sees_a_marker_after_a_long_context() -> None:
    text = "context: " + "word " * 4_000 + "\nquestion: why?"
    assert prompt_markers(text) == ("context", "question")


def test_prompt_markers_skips_the_middle_of_long_texts() -> None:
    text = "Summarize. " + "word " * 2_000 + "\nHidden: x\n" + "word " * 2_000
    assert len(text) > HEAD_CHARS * 2
    assert prompt_markers(text) == ()


def test_prompt_markers_tail_region_cut_mid_sentence_is_no_boundary() -> None:
    # The tail region starts inside "Xlabel", which must not read as a label at a boundary.
    text = "Do it. " + "y" * 6_000 + "Xlabel: z"
    assert prompt_markers(text) == ()


def test_prompt_markers_keeps_at_most_max_markers() -> None:
    text = "\n".join(f"field{i}: v" for i in range(MAX_MARKERS + 5))
    assert len(prompt_markers(text)) == MAX_MARKERS


@pytest.mark.parametrize(
    "text",
    [
        "Classify the sentiment of this review: great phone",
        "please summarize the article below. The council met on Monday.",
        "Given a passage, answer yes or no. Passage text here",
        "You are a support agent. The customer writes: my order is late",
        "The council met on Monday and approved the budget.\n\nSummarize the text above.",
    ],
)
def test_has_instructions_accepts_instructions(text: str) -> None:
    assert has_instructions(text, prompt_markers(text))


@pytest.mark.parametrize(
    "text",
    [
        "Is the sky blue?",
        "Does water boil at 100 degrees?",
        "Which planet is the largest?",
        "5 stocks to buy now",
        "Listing of the council meeting minutes",  # "List" must be a whole word
    ],
)
def test_has_instructions_rejects_bare_inputs(text: str) -> None:
    assert not has_instructions(text, prompt_markers(text))


def test_has_instructions_accepts_any_marker() -> None:
    assert has_instructions("Text: 5 stocks to buy now", ("text",))


def test_format_signature_reads_like_the_prompt() -> None:
    assert format_signature(("question", "context")) == "question: → context:"
    assert format_signature(()) == "(no markers)"
