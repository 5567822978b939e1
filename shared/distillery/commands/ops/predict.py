"""``distillery predict``: ask an endpoint to answer prompts.

Asked by family, the champion is sent each prompt the way its entry says it answers: after its
``prompt_prefix`` (a step-by-step model learned the label task ``predict: <prompt>`` → label and
was judged on it); ``--raw`` sends the prompts as given.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from distillery.commands.cli import EXIT_OK
from distillery.commands.ops._common import Invalid, Usage, dependencies, print_json, run
from distillery.core.errors import ObjectNotFoundError, PermanentError
from distillery.core.runtime import Dependencies
from distillery.labeling import champion_prefix, with_prefix


def register(subparsers: Any) -> None:
    """Add ``predict`` to the ``distillery`` command."""
    predict = subparsers.add_parser(
        "predict",
        help="ask an endpoint to answer prompts",
        description="Send prompts to a Vertex AI endpoint and print one answer a line. ENDPOINT "
        "is a resource name, an endpoint id, an endpoint's display name, or a model family (where "
        "its champion serves, in DISTILLERY_REGION). A family whose champion is a tuned Gemini "
        "model is asked through :generateContent on the champion's own endpoint; otherwise the "
        "endpoint gets text-model :predict instances (--generate asks any endpoint through "
        ":generateContent). A family's champion tuned step-by-step is sent each prompt after the "
        "prompt prefix its champion entry records (prompt_prefix, e.g. 'predict: '), as it was "
        "trained and judged; --raw sends the prompts as given.",
    )
    predict.add_argument("endpoint", metavar="ENDPOINT")
    predict.add_argument("text", metavar="TEXT", nargs="+", help="prompts; - reads one a line")
    predict.add_argument(
        "--generate",
        action="store_true",
        help="ask through :generateContent (a tuned Gemini model's endpoint)",
    )
    predict.add_argument(
        "--raw",
        action="store_true",
        help="send the prompts as given, without the champion's prompt prefix",
    )
    predict.add_argument("--json", dest="as_json", action="store_true", help="answers as JSON")
    predict.set_defaults(handler=run, action=_predict)


def _prompts(texts: Sequence[str]) -> list[str]:
    prompts: list[str] = []
    for text in texts:
        if text == "-":
            prompts.extend(line.rstrip("\n") for line in sys.stdin if line.strip())
        else:
            prompts.append(text)
    if not prompts:
        raise Usage("no prompt to send")
    return prompts


def _endpoint_name(deps: Dependencies, given: str) -> tuple[str, bool, str]:
    """The endpoint ``given`` names, whether it serves a tuned Gemini model (as a family's
    champion entry records: such a model answers ``:generateContent`` on its own endpoint), and
    the prompt prefix the family's champion is asked with ("" for an endpoint named directly)."""
    settings = deps.settings
    if given.startswith("projects/"):
        return given, False, ""
    if given.isdigit():
        name = f"projects/{settings.project}/locations/{settings.region}/endpoints/{given}"
        return name, False, ""
    from distillery.services.evaluation import backend_of
    from distillery.services.promoter import serving_endpoint_name

    # A model family: where its champion serves, else the endpoint named after it.
    family = deps.records.get(settings.models_collection, given) or {}
    champion = family.get("champion") or {}
    prefix = champion_prefix(champion)
    if champion.get("endpoint") and backend_of(champion) == "gemini":
        return str(champion["endpoint"]), True, prefix
    recorded = family.get("endpoint") or champion.get("endpoint")
    if recorded:
        return str(recorded), False, prefix
    endpoints = deps.require_endpoints()
    found = endpoints.find_endpoint(serving_endpoint_name(given), settings.region)
    found = found or endpoints.find_endpoint(given, settings.region)
    if found is None:
        raise Invalid(
            f"no endpoint is named {given!r} or {serving_endpoint_name(given)!r} in "
            f"{settings.region} (a model family's serving endpoint is made when its first model "
            "is promoted)"
        )
    return str(found.name), False, ""


def _generate(deps: Dependencies, endpoint: str, prompts: Sequence[str]) -> list[str]:
    """Each prompt's answer through ``:generateContent`` (one request a prompt)."""
    tuning = deps.require_tuning()
    try:
        return [tuning.generate(endpoint, prompt) for prompt in prompts]
    except ObjectNotFoundError:
        raise Invalid(f"there is no endpoint {endpoint}") from None
    except PermanentError as exc:  # e.g. nothing deployed there receives traffic
        raise Invalid(str(exc)) from None


def _predict(args: argparse.Namespace) -> int:
    prompts = _prompts(args.text)
    deps = dependencies()
    endpoint, gemini, prefix = _endpoint_name(deps, args.endpoint)
    if args.raw:
        prefix = ""
    elif prefix and not args.as_json:
        print(
            f"distillery: the champion of {args.endpoint} is asked with its prompt prefix "
            f"{prefix!r} before every prompt (--raw sends them as given)",
            file=sys.stderr,
        )
    sent = [with_prefix(prompt, prefix) for prompt in prompts]
    if gemini or args.generate:
        answers = _generate(deps, endpoint, sent)
        if args.as_json:
            print_json(
                {
                    "endpoint": endpoint,
                    "api": "generateContent",
                    "prompt_prefix": prefix,
                    "predictions": [
                        {"prompt": p, "content": c} for p, c in zip(prompts, answers, strict=True)
                    ],
                }
            )
        else:
            for answer in answers:
                print(answer)
        return EXIT_OK
    try:
        result = deps.require_endpoints().predict(endpoint, sent)
    except ObjectNotFoundError:
        raise Invalid(f"there is no endpoint {endpoint}") from None
    except PermanentError as exc:  # e.g. nothing deployed there receives traffic
        raise Invalid(str(exc)) from None
    if args.as_json:
        print_json(
            {
                "endpoint": endpoint,
                "deployed_model_id": result.deployed_model_id,
                "model": result.model,
                "prompt_prefix": prefix,
                "predictions": [
                    {"prompt": p, "content": c}
                    for p, c in zip(prompts, result.contents, strict=False)
                ],
            }
        )
    else:
        for content in result.contents:
            print(content)
    return EXIT_OK
