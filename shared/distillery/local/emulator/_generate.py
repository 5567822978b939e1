"""``POST /v1/{endpoint}:generateContent``: a deployed model answers a Gemini request.

The request is a ``GenerateContentRequest`` without ``model`` (that is the URL)::

    {"contents": [{"role": "user", "parts": [{"text": "..."}]}, ...],
     "systemInstruction"?: {"parts": [{"text": "..."}]},
     "generationConfig"?: {"maxOutputTokens": 64, "stopSequences": ["\\n"], "seed": 7, ...},
     "labels"?: {...}, "safetySettings"?: [...]}

and the answer a ``GenerateContentResponse``::

    {"candidates": [{"content": {"role": "model", "parts": [{"text": "..."}]},
                     "finishReason": "STOP" | "MAX_TOKENS"}],
     "usageMetadata": {"promptTokenCount", "candidatesTokenCount", "totalTokenCount",
                       "trafficType": "ON_DEMAND"},
     "modelVersion": "projects/P/locations/L/models/M@1", "createTime", "responseId"}

The conversation becomes the prompt the model was tuned on
(:func:`~distillery.local.emulator._contents.render_prompt`) and is answered by the endpoint's
``:predict`` path: the traffic split picks the deployed model (``generationConfig.seed`` or the
seed header makes the draw deterministic). The local student decodes greedily, so
``temperature``, ``topP``, ``topK`` and the penalties cannot change its answer and are accepted
only; ``maxOutputTokens`` cuts the answer (``MAX_TOKENS``) and ``stopSequences`` end it, as the
service does. Safety settings are accepted; nothing is ever blocked locally. Tools, cached
content and more than one candidate are not emulated and are refused as UNIMPLEMENTED.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from distillery._text import describe_json_value
from distillery.local.emulator._contents import (
    USER,
    ContentError,
    count_tokens,
    cut_tokens,
    parse_system_instruction,
    parse_turns,
    render_prompt,
)
from distillery.local.emulator._endpoints import EndpointService
from distillery.local.emulator._model import now, rfc3339
from distillery.local.emulator._status import ApiError, FieldViolation
from distillery.local.emulator._tuning import check_labels

_REQUEST_FIELDS = {
    "contents": "contents",
    "systemInstruction": "system_instruction",
    "cachedContent": "cached_content",
    "tools": "tools",
    "toolConfig": "tool_config",
    "labels": "labels",
    "safetySettings": "safety_settings",
    "modelArmorConfig": "model_armor_config",
    "generationConfig": "generation_config",
}
_NOT_EMULATED = ("cachedContent", "tools", "toolConfig", "modelArmorConfig")
_CONFIG_FIELDS = {
    "temperature": "temperature",
    "topP": "top_p",
    "topK": "top_k",
    "candidateCount": "candidate_count",
    "maxOutputTokens": "max_output_tokens",
    "stopSequences": "stop_sequences",
    "responseLogprobs": "response_logprobs",
    "logprobs": "logprobs",
    "presencePenalty": "presence_penalty",
    "frequencyPenalty": "frequency_penalty",
    "seed": "seed",
    "responseMimeType": "response_mime_type",
    "responseSchema": "response_schema",
    "responseJsonSchema": "response_json_schema",
    "routingConfig": "routing_config",
    "audioTimestamp": "audio_timestamp",
    "responseModalities": "response_modalities",
    "mediaResolution": "media_resolution",
    "speechConfig": "speech_config",
    "thinkingConfig": "thinking_config",
    "imageConfig": "image_config",
}


def _invalid(field_path: str, message: str) -> ApiError:
    return ApiError("INVALID_ARGUMENT", message, [FieldViolation(field_path, message)])


def _known(data: Any, known: Mapping[str, str], where: str) -> dict[str, Any]:
    """``data``'s fields by JSON name; an unknown name is refused as the REST API refuses it.

    Raises:
        ApiError: INVALID_ARGUMENT.
    """
    if not isinstance(data, Mapping):
        raise _invalid(
            where,
            f"Invalid JSON payload received. Expected an object at '{where}', got "
            f"{describe_json_value(data)}.",
        )
    by_proto = {snake: camel for camel, snake in known.items()}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in known or key in by_proto:
            values[key if key in known else by_proto[key]] = value
        else:
            raise _invalid(
                where,
                f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': "
                "Cannot find field.",
            )
    return values


def _count(config: Mapping[str, Any], key: str) -> int | None:
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _invalid(f"generation_config.{key}", f"{key} must be an integer")
    try:
        number = int(value)
    except ValueError:
        raise _invalid(f"generation_config.{key}", f"{key} must be an integer") from None
    if number != float(value):
        raise _invalid(f"generation_config.{key}", f"{key} must be an integer")
    return number


def generate_content(
    endpoints: EndpointService,
    project: str,
    location: str,
    endpoint_id: str,
    body: Mapping[str, Any],
    seed: str | None = None,
) -> dict[str, Any]:
    """``endpoints.generateContent`` (see the module docs).

    Raises:
        ApiError: INVALID_ARGUMENT (a malformed request), UNIMPLEMENTED (a feature the emulator
            does not emulate), and what ``:predict`` raises: NOT_FOUND, FAILED_PRECONDITION
            (nothing deployed receives traffic, no trainer), INTERNAL.
    """
    request = _known(body, _REQUEST_FIELDS, "generate_content_request")
    for name in _NOT_EMULATED:
        if request.get(name):
            raise ApiError(
                "UNIMPLEMENTED", f"The local emulator does not emulate {name} in generateContent."
            )
    check_labels(request.get("labels"), "generate_content_request.labels")
    try:
        turns = parse_turns(request.get("contents"))
        system_instruction = parse_system_instruction(request)
    except ContentError as exc:
        raise _invalid(exc.field, f"{exc.field}: {exc.problem}") from None
    if turns[-1].role != USER:
        raise _invalid(
            f"contents[{len(turns) - 1}].role",
            'The last content must come from the "user" role: the model answers it.',
        )
    config = _known(request.get("generationConfig") or {}, _CONFIG_FIELDS, "generation_config")
    candidates = _count(config, "candidateCount")
    if candidates is not None and candidates != 1:
        raise ApiError(
            "UNIMPLEMENTED",
            f"The local emulator answers one candidate; candidateCount {candidates} is not "
            "emulated.",
        )
    max_tokens = _count(config, "maxOutputTokens")
    if max_tokens is not None and max_tokens < 1:
        raise _invalid("generation_config.max_output_tokens", "maxOutputTokens must be at least 1")
    stops = config.get("stopSequences") or []
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise _invalid(
            "generation_config.stop_sequences", "stopSequences must be a list of non-empty strings"
        )
    draw_seed = _count(config, "seed")
    prompt = render_prompt(system_instruction, turns)
    parameters = {"seed": draw_seed} if draw_seed is not None else {}
    answer = endpoints.predict(
        project,
        location,
        endpoint_id,
        {"instances": [{"prompt": prompt}], "parameters": parameters},
        seed,
    )
    text = str(answer["predictions"][0]["content"])
    for stop in stops:
        if stop in text:
            text = text[: text.index(stop)]
    finish = "STOP"
    if max_tokens is not None and count_tokens(text) > max_tokens:
        text = cut_tokens(text, max_tokens)
        finish = "MAX_TOKENS"
    prompt_tokens, answer_tokens = count_tokens(prompt), count_tokens(text)
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": finish}
        ],
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": answer_tokens,
            "totalTokenCount": prompt_tokens + answer_tokens,
            "trafficType": "ON_DEMAND",
        },
        "modelVersion": f"{answer['model']}@{answer['modelVersionId']}",
        "createTime": rfc3339(now()),
        "responseId": uuid.uuid4().hex[:24],
    }
