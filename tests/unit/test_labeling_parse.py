"""The labeling package's pure parts: the teacher's requests, the parsing and judging of its
answers, the matching of output lines to input lines, and the two-task training file."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.cloud import aiplatform_v1

from distillery import labeling
from distillery.labeling import (
    LINE_LABEL_KEY,
    STEP_BY_STEP_INSTRUCTION,
    LabeledExample,
    LabelingSourceError,
    LabelingSpec,
    UnparseableError,
    compare_with_label,
    judge_output,
    match_outputs,
    parse_source_line,
    parse_teacher_text,
    request_lines,
    teacher_request,
    training_file,
)
from tests.helpers import labeling_spec


def spec(**changes: Any) -> LabelingSpec:
    return labeling_spec(
        "b",
        "validated/",
        "job-1",
        source_uri="gs://b/validated/abc/news.jsonl",
        source_examples=3,
        **({"min_labeled_fraction": 0.8, "max_output_tokens": 512} | changes),
    )


def line(text: str, label: str | None = None, system: str | None = None) -> bytes:
    example: dict[str, Any] = {}
    if system is not None:
        example["systemInstruction"] = {"parts": [{"text": system}]}
    example["contents"] = [{"role": "user", "parts": [{"text": text}]}]
    if label is not None:
        example["contents"].append({"role": "model", "parts": [{"text": label}]})
    return json.dumps(example).encode()


def output(number: int, **fields: Any) -> bytes:
    request = {"contents": [], "labels": {LINE_LABEL_KEY: str(number)}}
    return json.dumps({"request": request, "status": "", **fields}).encode()


def answered(number: int, text: str, finish: str = "STOP", **response: Any) -> bytes:
    candidate = {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": finish}
    return output(number, response={"candidates": [candidate], **response})


# --- requests ------------------------------------------------------------------------------------


def test_labeling_request_is_a_generate_content_request_with_the_line_label() -> None:
    example = parse_source_line(4, line("Classify: 5 stocks to buy now"))
    request = teacher_request(example, spec())["request"]
    # The installed client's message parses it: every field name is a GenerateContentRequest's.
    message = aiplatform_v1.GenerateContentRequest.from_json(json.dumps(request))
    assert message.labels[LINE_LABEL_KEY] == "4"
    assert message.generation_config.max_output_tokens == 512
    assert message.generation_config.temperature == 0
    assert message.system_instruction.parts[0].text == STEP_BY_STEP_INSTRUCTION
    assert [c.role for c in message.contents] == ["user"]


def test_labeling_request_leaves_out_the_label_and_puts_the_own_instruction_first() -> None:
    example = parse_source_line(1, line("Text: hi", label="greeting", system="Be brief."))
    request = teacher_request(example, spec(mode="rationales"))["request"]
    told = request["systemInstruction"]["parts"][0]["text"]
    assert told.startswith("Be brief.\n\n" + STEP_BY_STEP_INSTRUCTION)
    assert told.endswith(labeling.GIVEN_ANSWER_HINT.format(label="greeting"))
    assert request["contents"] == [{"role": "user", "parts": [{"text": "Text: hi"}]}]
    # The teacher labels everything itself in the other mode: no hint there.
    plain = teacher_request(example, spec())["request"]["systemInstruction"]["parts"][0]["text"]
    assert "greeting" not in plain


def test_labeling_request_lines_are_the_same_bytes_every_time() -> None:
    examples = [parse_source_line(n, line(f"prompt {n} é")) for n in (1, 2, 3)]
    first = request_lines(examples, spec())
    assert first == request_lines(examples, spec())
    assert [json.loads(raw)["request"]["labels"][LINE_LABEL_KEY] for raw in first.splitlines()] == [
        "1",
        "2",
        "3",
    ]


def test_labeling_request_rationales_mode_refuses_an_unlabeled_line() -> None:
    example = parse_source_line(7, line("no label here"))
    with pytest.raises(LabelingSourceError, match=r"line 7 .*has no label"):
        teacher_request(example, spec(mode="rationales"))


def test_labeling_source_line_refuses_a_line_without_turns() -> None:
    with pytest.raises(LabelingSourceError, match=r"line 2 .*no contents"):
        parse_source_line(2, b'{"input_text": "x"}')


# --- parsing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rationale", "answer"),
    [
        ("Rationale: stocks are money.\nAnswer: business", "stocks are money.", "business"),
        ("rationale:  a\nb\n  ANSWER:   business  ", "a\nb", "business"),
        ("**Rationale:** money talk\n**Answer:** business", "money talk", "business"),
        ("Rationale: x\n**Answer**: business", "x", "business"),
        ("Sure!\nRationale: x\n- Answer: business", "x", "business"),
        # The LAST answer line wins: a rationale may quote one.
        ("Rationale: not 'Answer: sport'.\nAnswer: sport?\nAnswer: business", None, "business"),
        ("Rationale: r\nAnswer:\nmulti\nline", "r", "multi\nline"),
    ],
)
def test_labeling_parse_is_lenient_where_it_is_safe(
    text: str, rationale: str | None, answer: str
) -> None:
    parsed_rationale, parsed_answer = parse_teacher_text(text)
    assert parsed_answer == answer
    if rationale is not None:
        assert parsed_rationale == rationale
    else:
        assert "Answer: sport?" in parsed_rationale


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("business", "no 'Answer:'"),
        ("Answer: business", "no 'Rationale:'"),
        ("Answer: business\nRationale: late", "no 'Rationale:' before"),
        ("Rationale:\nAnswer: business", "rationale is empty"),
        ("Rationale: r\nAnswer:   ", "answer is empty"),
        ("The answer is business because Rationale", "no 'Answer:'"),
    ],
)
def test_labeling_parse_is_strict_where_it_is_not(text: str, why: str) -> None:
    with pytest.raises(UnparseableError, match=why):
        parse_teacher_text(text)


def test_labeling_judge_every_outcome() -> None:
    good = json.loads(answered(1, "Rationale: r\nAnswer: a", modelVersion="gemini-2.5-pro-001"))
    judged = judge_output(1, good)
    assert (judged.outcome, judged.rationale, judged.answer) == ("labeled", "r", "a")
    assert judged.model_version == "gemini-2.5-pro-001"

    status = json.dumps({"error": {"code": 8, "message": "Resource exhausted for line"}})
    failed = judge_output(2, json.loads(output(2, status=status)))
    assert (failed.outcome, failed.detail) == ("failed", "Resource exhausted for line")
    assert judge_output(2, json.loads(output(2, status="boom"))).detail == "boom"

    feedback = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "candidates": []}
    blocked = judge_output(3, json.loads(output(3, response=feedback)))
    assert blocked.outcome == "blocked"
    assert "PROHIBITED_CONTENT" in (blocked.detail or "")
    for finish in ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"):
        stopped = judge_output(3, json.loads(answered(3, "", finish=finish)))
        assert (stopped.outcome, finish in (stopped.detail or "")) == ("blocked", True)
    none = judge_output(3, json.loads(output(3, response={"candidates": []})))
    assert none.outcome == "blocked"

    cut = judge_output(4, json.loads(answered(4, "Rationale: long and", finish="MAX_TOKENS")))
    assert cut.outcome == "unparseable"
    assert "maxOutputTokens" in (cut.detail or "")
    # Cut after an answer line too: what is there may itself be cut short.
    cut_late = judge_output(4, json.loads(answered(4, "Rationale: r\nAnswer: bus", "MAX_TOKENS")))
    assert cut_late.outcome == "unparseable"
    prose = judge_output(5, json.loads(answered(5, "It is business.")))
    assert (prose.outcome, "no 'Answer:'" in (prose.detail or "")) == ("unparseable", True)


def test_labeling_judge_every_finish_reason_that_blocks_is_a_finish_reason() -> None:
    known = set(aiplatform_v1.Candidate.FinishReason.__members__)
    assert known >= labeling.BLOCKING_FINISH_REASONS


def test_labeling_disagreement_is_after_whitespace_and_case() -> None:
    answer = judge_output(1, json.loads(answered(1, "Rationale: r\nAnswer:  Business ")))
    assert compare_with_label(answer, "business").outcome == "labeled"
    other = compare_with_label(answer, "sport")
    assert (other.outcome, other.rationale, other.answer) == ("disagreed", None, "Business")


def test_labeling_match_by_line_label_in_any_order() -> None:
    outputs = [
        answered(3, "Rationale: c\nAnswer: C"),
        b"not json",
        output(1, status="failed once"),
        answered(1, "Rationale: a\nAnswer: A"),  # answered twice: the better answer stands
        json.dumps({"request": {"contents": []}, "status": ""}).encode(),  # no line label
        answered(9, "Rationale: z\nAnswer: Z"),  # a line no input has
    ]
    matched = match_outputs(outputs, [1, 2, 3])
    assert list(matched.answers) == [1, 2, 3]
    assert matched.answers[1].answer == "A"
    assert matched.answers[2].outcome == "missing"
    assert matched.answers[3].answer == "C"
    assert [s["output_line"] for s in matched.strays] == [2, 5, 6]


# --- the training file ---------------------------------------------------------------------------


def examples(count: int) -> list[LabeledExample]:
    return [
        LabeledExample(
            line=n,
            contents=({"role": "user", "parts": [{"text": f"prompt {n}"}]},),
            system_instruction={"parts": [{"text": "sys"}]} if n == 1 else None,
            label=f"label {n}",
            label_by="teacher",
            rationale=f"because {n}",
            rationale_by="gemini-2.5-pro",
        )
        for n in range(1, count + 1)
    ]


def test_labeling_training_file_has_two_prefixed_tasks_interleaved() -> None:
    made = training_file(examples(40), spec(), "job-1")
    lines = [json.loads(raw) for raw in made.data.splitlines()]
    assert (made.label_tasks, made.rationale_tasks, len(lines)) == (40, 40, 80)
    prompts = [line["contents"][0]["parts"][0]["text"] for line in lines]
    targets = {line["contents"][0]["parts"][0]["text"]: line["contents"][1] for line in lines}
    assert targets["predict: prompt 7"] == {"role": "model", "parts": [{"text": "label 7"}]}
    assert targets["explain: prompt 7"] == {"role": "model", "parts": [{"text": "because 7"}]}
    assert [line.get("systemInstruction") for line in lines].count(
        {"parts": [{"text": "sys"}]}
    ) == 2
    # Interleaved: the first half is not all one task.
    first_half = {p.split(":")[0] for p in prompts[:40]}
    assert first_half == {"predict", "explain"}
    assert made.data == training_file(examples(40), spec(), "job-1").data


@pytest.mark.parametrize(("mixture", "low", "high"), [(0.0, 0, 0), (0.5, 25, 75), (1.0, 100, 100)])
def test_labeling_training_file_mixture(mixture: float, low: int, high: int) -> None:
    made = training_file(examples(100), spec(rationale_mixture=mixture), "job-1")
    assert made.label_tasks == 100
    assert low <= made.rationale_tasks <= high
    chosen = {n for n in range(1, 101) if labeling.gives_rationale_task("job-1", n, mixture)}
    assert len(chosen) == made.rationale_tasks


def test_labeling_training_file_prefixes_the_last_user_turn() -> None:
    turns = (
        {"role": "user", "parts": [{"text": "first"}]},
        {"role": "model", "parts": [{"text": "ok"}]},
        {"role": "user", "parts": [{"text": "second"}]},
    )
    example = LabeledExample(1, turns, None, "L", "user", None, None)
    made = training_file([example], spec(), "job-1")
    [only] = [json.loads(raw) for raw in made.data.splitlines()]
    texts = [turn["parts"][0]["text"] for turn in only["contents"]]
    assert texts == ["first", "ok", "predict: second", "L"]
    assert made.rationale_tasks == 0  # no rationale, no rationale task
