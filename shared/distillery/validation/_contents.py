"""The per-line checks of a dataset for a Gemini supervised tuning job.

:class:`GeminiChecker` extends the seed's checker (:mod:`._jsonl`): the encoding, JSON and
object checks, the ``input_text``/``output_text`` field checks, duplicates and the prompt-format
warnings are the seed's, unchanged. What it adds:

- native ``contents`` lines, checked turn by turn (roles alternate from ``user`` to the model's
  answer, parts of non-empty text, no unknown keys), with findings naming the field down to the
  part (``contents[1].parts[0].text``);
- one format per file: the first line of the other format is an error;
- the limits of the chosen base model instead of the PaLM pipeline's: tokens per example (input
  and output together, estimated as the seed estimates them), examples per training and
  validation set;
- every labeled example's ``contents`` form in :attr:`GeminiChecker.converted`, which the copy
  a job trains on is made of.

With ``prompts_only`` (a training set for the distillation mode, where the teacher writes the
responses) every example becomes one user turn: an ``input_text`` line needs no ``output_text``
(one given is dropped, with an ``answer_dropped`` warning), and a native ``contents`` line is one
user turn, optionally followed by a model answer that is dropped the same way; any other shape is
a ``prompt_turns_invalid`` error naming the turn. The token limit then counts the prompt only.

In the supervised mode a training set whose examples are all unlabeled (``input_text`` alone, or
one user turn) is valid too: the teacher labels it before tuning (a ``teacher_labels`` warning
says so), and its copy is prompts only, as the distillation mode's is. A set with labeled and
unlabeled lines is refused (``output_text_required`` on the unlabeled lines): the teacher labels a
whole set or none of it. An eval set stays labeled throughout.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from distillery import facts
from distillery._text import describe_json_value, preview
from distillery.validation import _gemini_rules as gemini
from distillery.validation import _rules as rules
from distillery.validation._convert import contents_example, prompt_example
from distillery.validation._jsonl import (
    MAX_TRACKED_DIGESTS,
    _JsonlChecker,
    _LineTally,
    _Tally,
    text_digest,
)
from distillery.validation._names import DatasetKind
from distillery.validation._report import Finding, Labeling, ValidationReport
from distillery.validation._rules import Rule

Format = Literal["text", "contents"]

_FORMAT_NAMES: dict[Format, str] = {
    "text": "input_text/output_text",
    "contents": "contents",
}
_CONTENTS_KEYS = ("systemInstruction", "contents")
_TURN_KEYS = ("role", "parts")
_SYSTEM_KEYS = ("role", "parts")
_PART_KEYS = ("text",)
_MISSING: Any = object()


def estimate_tokens(text: str) -> int:
    """The validator's token estimate of ``text`` (see :data:`rules.TOKEN_ESTIMATE_METHOD`)."""
    return -(-len(text) // rules.CHARS_PER_TOKEN)


def line_format(example: dict[str, Any]) -> Format | None:
    """The format an example's keys say it is in, or None when they name neither."""
    if any(key in example for key in _CONTENTS_KEYS):
        return "contents"
    if "input_text" in example or "output_text" in example:
        return "text"
    return None


class GeminiChecker(_JsonlChecker):
    """The seed's per-line checks plus the ``contents`` format and the base model's limits."""

    def __init__(
        self,
        kind: DatasetKind,
        max_findings: int,
        model: facts.GeminiTuningModel,
        *,
        prompts_only: bool = False,
    ) -> None:
        super().__init__(kind, max_findings)
        self.model = model
        #: The distillation mode's training set: the copy holds the user turns only.
        self.prompts_only = prompts_only
        #: The lines whose answer the prompts-only copy leaves out.
        self.answers_dropped = _LineTally()
        #: The file's format: that of the first line whose keys name one.
        self.format: Format | None = None
        self.format_line = 0
        self.other_format = _LineTally()
        #: The ``contents`` form of the line just checked, when it is a valid labeled example.
        self.converted: dict[str, Any] | None = None
        #: Estimated tokens of the valid examples, summed (the planning cost's dataset tokens).
        self.dataset_tokens = 0

    def _limit(self) -> int:
        if self.kind is DatasetKind.EVAL:
            return self.model.max_validation_examples
        return self.model.max_training_examples

    # --- per line ---------------------------------------------------------------------------------

    def check_line(self, number: int, data: bytes | None, length: int, offset: int) -> None:
        self.converted = None
        super().check_line(number, data, length, offset)

    def _count_example(self, number: int) -> None:
        self.examples += 1
        if self.examples == self._limit() + 1:
            self.first_line_over_limit = number

    def _check_example(self, number: int, example: dict[str, Any]) -> None:
        found = line_format(example)
        if found is not None:
            if self.format is None:
                self.format, self.format_line = found, number
            elif found != self.format:
                self._count_line(self.other_format, number)
        if (found or self.format or "text") == "text":
            self._check_text_example(number, example)
        else:
            self._check_contents_example(number, example)

    def _check_text_example(self, number: int, example: dict[str, Any]) -> None:
        """The seed's checks of an ``input_text``/``output_text`` line, then its conversion."""
        if self.prompts_only:
            self._check_text_prompt(number, example)
            return
        is_labeled = "output_text" in example
        self._count_line(self.labeled if is_labeled else self.unlabeled, number)
        for name in example:
            if name not in ("input_text", "output_text"):
                self._note_unknown_field(name, number)
        input_text = self._checked_input(number, example)
        output_text = self._checked_output(number, example["output_text"]) if is_labeled else None
        if input_text is None:
            return
        self._check_prompt(number, input_text)
        if is_labeled and output_text is None:
            return
        self._check_duplicate(number, input_text, output_text)
        if output_text is None:
            # Unlabeled: judged for the file as a whole (_check_labeling). A training set that
            # is unlabeled throughout is labeled by the teacher, so its copy holds the prompt;
            # once a labeled line has been seen the set is mixed, invalid, and nothing is kept.
            if self._keeps_unlabeled() and self._within_token_limit(number, [input_text], []):
                self.converted = prompt_example(input_text)
            return
        if not output_text.strip():
            self.add(
                gemini.OUTPUT_TEXT_EMPTY,
                number,
                "output_text",
                "output_text is empty or only whitespace: the model would learn to answer nothing",
            )
            return
        if self._within_token_limit(number, [input_text], [output_text]):
            self.converted = contents_example(input_text, output_text)

    def _check_text_prompt(self, number: int, example: dict[str, Any]) -> None:
        """A prompts-only ``input_text`` line: the prompt checked, an answer dropped."""
        for name in example:
            if name not in ("input_text", "output_text"):
                self._note_unknown_field(name, number)
        is_labeled = "output_text" in example
        self._count_line(self.labeled if is_labeled else self.unlabeled, number)
        input_text = self._checked_input(number, example)
        if input_text is None:
            return
        self._check_prompt(number, input_text)
        self._check_duplicate(number, input_text, None)
        if is_labeled:
            self._count_line(self.answers_dropped, number)
        if self._within_token_limit(number, [input_text], []):
            self.converted = prompt_example(input_text)

    def _check_contents_example(self, number: int, example: dict[str, Any]) -> None:
        """Check a ``contents`` line; keep its normalized form when it is valid."""
        valid = True
        for name in example:
            if name not in _CONTENTS_KEYS:
                valid = False
                self.add(
                    gemini.CONTENTS_UNKNOWN_KEY,
                    number,
                    name,
                    f"unknown key {preview(name)}: a contents example holds only "
                    "systemInstruction and contents",
                )
        system: dict[str, Any] | None = None
        system_texts: list[str] = []
        if "systemInstruction" in example:
            checked = self._system_instruction(number, example["systemInstruction"])
            if checked is None:
                valid = False
            else:
                system, system_texts = checked
        turns = self._turns(number, example.get("contents", _MISSING), example)
        if turns is None or not valid:
            return
        if self.prompts_only:
            self._keep_prompt(number, system, system_texts, turns)
            return
        if len(turns) == 1:  # One user turn (_roles_in_order): a prompt for the teacher.
            self._count_line(self.unlabeled, number)
            if self._keeps_unlabeled():
                self._keep_prompt(number, system, system_texts, turns)
            return
        self._count_line(self.labeled, number)
        prompt = [text for _, texts in turns[:-1] for text in texts]
        answer = turns[-1][1]
        if not self._within_token_limit(number, system_texts + prompt, answer):
            return
        self._check_contents_duplicate(number, system_texts, turns)
        converted: dict[str, Any] = {}
        if system is not None:
            converted["systemInstruction"] = system
        converted["contents"] = [
            {"role": role, "parts": [{"text": text} for text in texts]} for role, texts in turns
        ]
        self.converted = converted

    def _keeps_unlabeled(self) -> bool:
        """Whether an unlabeled line's prompt goes in the copy: a supervised training set's, as
        long as no labeled line has made the set mixed (an unlabeled eval set is an error)."""
        return self.kind is DatasetKind.TRAINING and not self.labeled.count

    def _keep_prompt(
        self,
        number: int,
        system: dict[str, Any] | None,
        system_texts: list[str],
        turns: list[tuple[str, list[str]]],
    ) -> None:
        """A valid prompt-only ``contents`` line: its user turn kept, an answer dropped (a
        supervised training set's unlabeled line was counted by the caller)."""
        if self.prompts_only and len(turns) == 2:
            self._count_line(self.labeled, number)
            self._count_line(self.answers_dropped, number)
        elif self.prompts_only:
            self._count_line(self.unlabeled, number)
        _, prompt = turns[0]
        if not self._within_token_limit(number, system_texts + prompt, []):
            return
        self._check_contents_duplicate(number, system_texts, [turns[0], ("model", [])])
        converted: dict[str, Any] = {}
        if system is not None:
            converted["systemInstruction"] = system
        converted["contents"] = [
            {"role": facts.GEMINI_USER_ROLE, "parts": [{"text": text} for text in prompt]}
        ]
        self.converted = converted

    def _system_instruction(
        self, number: int, value: Any
    ) -> tuple[dict[str, Any], list[str]] | None:
        field = "systemInstruction"
        if not isinstance(value, dict):
            self.add(
                gemini.SYSTEM_INSTRUCTION_INVALID,
                number,
                field,
                f"systemInstruction is {describe_json_value(value)}, expected an object "
                '{"parts": [{"text": ...}]}',
            )
            return None
        valid = self._known_keys(number, field, value, _SYSTEM_KEYS)
        role = value.get("role", _MISSING)
        if role is not _MISSING and not isinstance(role, str):
            valid = False
            self.add(
                gemini.SYSTEM_INSTRUCTION_INVALID,
                number,
                f"{field}.role",
                f"systemInstruction.role is {describe_json_value(role)}, expected a string "
                "(the service ignores it)",
            )
        texts = self._parts(
            number,
            f"{field}.parts",
            value.get("parts", _MISSING),
            gemini.SYSTEM_INSTRUCTION_INVALID,
        )
        if texts is None or not valid:
            return None
        normalized: dict[str, Any] = {"parts": [{"text": text} for text in texts]}
        if role is not _MISSING:
            normalized = {"role": role, **normalized}
        return normalized, texts

    def _turns(
        self, number: int, contents: Any, example: dict[str, Any]
    ) -> list[tuple[str, list[str]]] | None:
        """The (role, texts) of each turn when every turn is valid and in order; else None."""
        if contents is _MISSING:
            present = ", ".join(sorted(example)) or "none"
            self.add(
                gemini.CONTENTS_MISSING,
                number,
                "contents",
                f"the example has no contents (keys present: {preview(present, 80)})",
            )
            return None
        if not isinstance(contents, list) or not contents:
            shown = "an empty array" if contents == [] else describe_json_value(contents)
            self.add(
                gemini.CONTENTS_INVALID,
                number,
                "contents",
                f"contents is {shown}, expected an array of user and model turns",
            )
            return None
        turns: list[tuple[str, list[str]]] = []
        valid = True
        for index, turn in enumerate(contents):
            checked = self._turn(number, f"contents[{index}]", turn)
            if checked is None:
                valid = False
            else:
                turns.append(checked)
        if not valid:
            return None
        return turns if self._roles_in_order(number, [role for role, _ in turns]) else None

    def _turn(self, number: int, field: str, turn: Any) -> tuple[str, list[str]] | None:
        if not isinstance(turn, dict):
            self.add(
                gemini.CONTENTS_TURN_INVALID,
                number,
                field,
                f"{field} is {describe_json_value(turn)}, expected an object "
                '{"role": ..., "parts": [...]}',
            )
            return None
        valid = self._known_keys(number, field, turn, _TURN_KEYS)
        role = turn.get("role", _MISSING)
        roles = (facts.GEMINI_USER_ROLE, facts.GEMINI_MODEL_ROLE)
        if role is _MISSING:
            valid = False
            self.add(
                gemini.CONTENTS_TURN_INVALID,
                number,
                f"{field}.role",
                f'{field} has no role: say "{roles[0]}" or "{roles[1]}"',
            )
        elif role not in roles:
            valid = False
            self.add(
                gemini.CONTENTS_ROLE_INVALID,
                number,
                f"{field}.role",
                f'{field}.role is {describe_json_value(role)}, expected "{roles[0]}" or '
                f'"{roles[1]}"',
            )
        texts = self._parts(
            number, f"{field}.parts", turn.get("parts", _MISSING), gemini.CONTENTS_PARTS_INVALID
        )
        if texts is None or not valid:
            return None
        return role, texts

    def _parts(self, number: int, field: str, parts: Any, rule: Rule) -> list[str] | None:
        """The texts of ``parts`` when each is a non-empty text part; else record why, None."""
        if parts is _MISSING:
            self.add(rule, number, field, f"{field} is missing: a turn needs its text parts")
            return None
        if not isinstance(parts, list) or not parts:
            shown = "an empty array" if parts == [] else describe_json_value(parts)
            self.add(
                rule, number, field, f'{field} is {shown}, expected an array of {{"text": ...}}'
            )
            return None
        texts: list[str] = []
        valid = True
        for index, part in enumerate(parts):
            at = f"{field}[{index}]"
            if not isinstance(part, dict):
                valid = False
                self.add(
                    rule,
                    number,
                    at,
                    f'{at} is {describe_json_value(part)}, expected an object {{"text": ...}}',
                )
                continue
            if not self._known_keys(number, at, part, _PART_KEYS, only_text=True):
                valid = False
            text = part.get("text", _MISSING)
            if text is _MISSING:
                valid = False
                self.add(rule, number, at, f"{at} has no text: only text parts are supported")
            elif not isinstance(text, str):
                valid = False
                self.add(
                    rule,
                    number,
                    f"{at}.text",
                    f"{at}.text is {describe_json_value(text)}, expected a non-empty string",
                )
            elif not text.strip():
                valid = False
                what = "an empty string" if not text else "only whitespace"
                self.add(rule, number, f"{at}.text", f"{at}.text is {what}")
            else:
                texts.append(text)
        return texts if valid else None

    def _known_keys(
        self,
        number: int,
        field: str,
        value: dict[str, Any],
        known: tuple[str, ...],
        *,
        only_text: bool = False,
    ) -> bool:
        valid = True
        for name in value:
            if name in known:
                continue
            valid = False
            why = (
                "only text parts are supported"
                if only_text
                else f"{field} holds only {' and '.join(known)}"
            )
            self.add(
                gemini.CONTENTS_UNKNOWN_KEY,
                number,
                f"{field}.{name}",
                f"unknown key {preview(name)} in {field}: {why}",
            )
        return valid

    def _roles_in_order(self, number: int, roles: list[str]) -> bool:
        user, model = facts.GEMINI_USER_ROLE, facts.GEMINI_MODEL_ROLE
        if self.prompts_only:
            return self._prompt_roles(number, roles)
        if self.kind is DatasetKind.TRAINING and roles == [user]:
            return True  # An unlabeled example: the teacher labels it (_check_labeling judges).
        for index, role in enumerate(roles):
            expected = user if index % 2 == 0 else model
            if role != expected:
                self.add(
                    gemini.CONTENTS_ROLE_ORDER,
                    number,
                    f"contents[{index}].role",
                    f'turn {index + 1} is "{role}" where "{expected}" is due: turns alternate '
                    f'"{user}", "{model}", starting with "{user}"',
                )
                return False
        if roles[-1] != model:
            self.add(
                gemini.CONTENTS_ROLE_ORDER,
                number,
                f"contents[{len(roles) - 1}].role",
                f'the last turn is "{roles[-1]}": an example ends with the model\'s answer',
            )
            return False
        return True

    def _prompt_roles(self, number: int, roles: list[str]) -> bool:
        """A distillation prompt: one user turn, or a user turn and the answer to drop."""
        user, model = facts.GEMINI_USER_ROLE, facts.GEMINI_MODEL_ROLE
        if roles[0] != user:
            self.add(
                gemini.PROMPT_TURNS_INVALID,
                number,
                "contents[0].role",
                f'turn 1 is "{roles[0]}": a distillation prompt starts with the "{user}" turn',
            )
            return False
        if len(roles) > 2 or (len(roles) == 2 and roles[1] != model):
            self.add(
                gemini.PROMPT_TURNS_INVALID,
                number,
                "contents[1].role" if len(roles) == 2 else f"contents[{len(roles) - 1}]",
                f"the example has {len(roles)} turns ({', '.join(roles)}): a distillation "
                f'prompt is one "{user}" turn, optionally followed by a "{model}" answer '
                "(dropped: the teacher writes it)",
            )
            return False
        return True

    def _within_token_limit(self, number: int, inputs: list[str], outputs: list[str]) -> bool:
        input_tokens = sum(estimate_tokens(text) for text in inputs)
        output_tokens = sum(estimate_tokens(text) for text in outputs)
        self.max_input_tokens = max(self.max_input_tokens, input_tokens)
        self.max_output_tokens = max(self.max_output_tokens, output_tokens)
        tokens = input_tokens + output_tokens
        limit = self.model.max_example_tokens
        if tokens > limit:
            characters = sum(len(text) for text in inputs + outputs)
            self.add(
                gemini.EXAMPLE_TOO_LONG,
                number,
                None,
                f"the example is about {tokens:,} tokens ({characters:,} characters, input and "
                f"output), over the {limit:,}-token limit per training example of "
                f"{self.model.name}",
            )
            return False
        self.dataset_tokens += tokens
        return True

    def _check_contents_duplicate(
        self, number: int, system: list[str], turns: list[tuple[str, list[str]]]
    ) -> None:
        """Warn when an earlier line holds the same example; remember its prompt for overlap."""
        if not system and len(turns) == 2:
            # A single-turn example: keyed like the input_text it converts from, so a contents
            # training set and an input_text eval set still meet in the overlap check.
            prompt = "".join(turns[0][1])
        else:
            prompt = json.dumps([system, turns[:-1]], ensure_ascii=False)
        input_digest = text_digest(prompt)
        if len(self.input_lines) < MAX_TRACKED_DIGESTS:
            self.input_lines.setdefault(input_digest, number)
        key = (input_digest, text_digest("".join(turns[-1][1])))
        first = self.example_lines.get(key)
        if first is not None:
            self.add(
                rules.DUPLICATE_EXAMPLES,
                number,
                None,
                f"duplicates line {first:,} (same instruction and turns)",
            )
        elif len(self.example_lines) < MAX_TRACKED_DIGESTS:
            self.example_lines[key] = number

    # --- end of file ------------------------------------------------------------------------------

    def finish(self, report: ValidationReport) -> Labeling:
        # The PaLM pipeline's truncation limits of input_text and output_text do not apply to
        # Gemini: its limit is on the example as a whole (example_too_long).
        self.tallies.pop(rules.INPUT_TOO_LONG, None)
        self.tallies.pop(rules.OUTPUT_TOO_LONG, None)
        self._summarise_formats()
        if self.answers_dropped.count:
            self._add_lines(
                gemini.ANSWER_DROPPED,
                self.answers_dropped,
                None,
                "the line holds an answer, which the prompts-only copy leaves out: the teacher "
                "writes the responses",
            )
        labeling = super().finish(report)
        for rule in gemini.GEMINI_RULES:
            tally = self.tallies.get(rule)
            if tally is not None:
                report.add(rule, *tally.findings, count=tally.count, note=self.notes.get(rule))
        return labeling

    def _summarise_formats(self) -> None:
        if not self.other_format.count or self.format is None:
            return
        other: Format = "contents" if self.format == "text" else "text"
        first = self.other_format.lines[0]
        tally = self.tallies.setdefault(gemini.MIXED_FORMATS, _Tally())
        tally.count = self.other_format.count
        lines = "1 line is" if tally.count == 1 else f"{tally.count:,} lines are"
        tally.findings = [
            Finding(
                line=first,
                message=f"this line is in the {_FORMAT_NAMES[other]} format, but the file is "
                f"in the {_FORMAT_NAMES[self.format]} format (from line {self.format_line:,}); "
                f"{lines} in the other format: give each dataset one format",
            )
        ]

    def _check_size(self, labeling: Labeling) -> None:
        examples = self.examples
        if examples == 0:
            found = f" (only {self.blank_lines:,} blank lines)" if self.blank_lines else ""
            self.add(rules.DATASET_EMPTY, None, None, f"the file holds no examples{found}")
            return
        limit = self._limit()
        model = self.model.name
        if examples > limit:
            rule, what = (
                (gemini.EVAL_TOO_MANY_EXAMPLES_FOR_MODEL, "validation set")
                if self.kind is DatasetKind.EVAL
                else (gemini.TOO_MANY_EXAMPLES_FOR_MODEL, "training set")
            )
            self.add(
                rule,
                self.first_line_over_limit,
                None,
                f"the {what} has {examples:,} examples, {examples - limit:,} over {model}'s "
                f"limit of {limit:,} (this line holds example {limit + 1:,})",
            )
        unlabeled = self.kind is DatasetKind.TRAINING and labeling == "unlabeled"
        if unlabeled and not self.prompts_only and examples <= facts.RECOMMENDED_MIN_UNLABELED:
            # SPEC "Dataset format": the teacher's labels cover the task with more prompts.
            self.warn_few_unlabeled(examples)
        recommended = facts.GEMINI_RECOMMENDED_MIN_EXAMPLES
        if self.kind is DatasetKind.TRAINING and examples < recommended:
            self.add(
                gemini.FEW_TUNING_EXAMPLES,
                None,
                None,
                f"the dataset has {examples:,} examples; Google recommends starting with "
                f"{recommended} and scaling up to thousands if needed",
            )

    def _check_labeling(self, labeling: Labeling) -> None:
        if self.prompts_only:
            return  # The teacher labels every prompt: labeled, unlabeled or mixed, all are one.
        if self.kind is DatasetKind.EVAL or not self.unlabeled.count:
            super()._check_labeling(labeling)
            return
        if labeling == "unlabeled":
            # Prompts only: the teacher labels every one (distilling step-by-step).
            examples = self.unlabeled.count
            self.add(
                gemini.TEACHER_LABELS,
                None,
                None,
                f"none of the {examples:,} examples has an answer: before tuning, a batch "
                "prediction job has the teacher model answer and explain every prompt, billed "
                "by the teacher's input and output tokens (distillery plan shows the estimate); "
                "examples the teacher fails to label are listed by line and left out",
            )
            return
        text = self.format != "contents"
        labeled = self.labeled.count
        others = "the labeled example" if labeled == 1 else f"the {labeled:,} labeled examples"
        self._add_lines(
            gemini.OUTPUT_TEXT_REQUIRED,
            self.unlabeled,
            "output_text" if text else "contents",
            f"the line has {'no output_text' if text else 'no model turn'}, unlike {others}: "
            "label it first, or leave every line unlabeled so the teacher labels the whole set",
        )
