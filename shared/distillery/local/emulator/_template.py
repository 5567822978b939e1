"""The input parameters of the ``distillation/v1.0.0`` pipeline template: names, types, defaults.

Source of the list, read 2026-12-01: the template's ``root.inputDefinitions.parameters`` as
googleapis/python-aiplatform's ``tests/unit/aiplatform/test_language_models.py`` holds them
(``_TEST_DISTILLATION_PIPELINE_SPEC``, every parameter with its ``parameterType``, ``defaultValue``
and ``isOptional``), and ``vertexai/language_models/_distillation.py`` of google-cloud-aiplatform
2.7.0 (:data:`distillery.facts.TEMPLATE_URI`; what the SDK sends and documents, e.g.
``max_context_length`` "can be either '8k' or '32k'"). A parameter without a default (``project``,
``dataset_uri``) is required; any other name is not a parameter of the template.

Types are KFP's ``parameterType`` names. JSON has one number type and the official client sends
every number as a float (``"train_steps": 300.0``), so an integral float is a ``NUMBER_INTEGER``;
a boolean is never a number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from distillery import facts

STRING = "STRING"
NUMBER_INTEGER = "NUMBER_INTEGER"
NUMBER_DOUBLE = "NUMBER_DOUBLE"
BOOLEAN = "BOOLEAN"

#: The template's default ``model_display_name``.
DEFAULT_MODEL_DISPLAY_NAME = "distilled-student-model"  # belongs in distillery.facts
#: The template's own default ``evaluation_interval``; the seed documentation (SPEC.md, "Training
#: parameters") says 20 steps, and the emulator follows the seed
#: (:data:`distillery.facts.DEFAULT_EVALUATION_INTERVAL`), as the product does.
TEMPLATE_DEFAULT_EVALUATION_INTERVAL = 100  # belongs in distillery.facts
#: The values of ``max_context_length`` the SDK documents ("" is the template's default: the
#: student's own context size).
MAX_CONTEXT_LENGTHS: tuple[str, ...] = ("8k", "32k")  # belongs in distillery.facts
#: The ``max_context_length`` whose students tune with the long-context batch size.
LONG_CONTEXT_LENGTH = "32k"  # belongs in distillery.facts


@dataclass(frozen=True)
class TemplateParameter:
    """One input parameter of the template."""

    kind: str
    #: The template's ``defaultValue``; None: the parameter is required.
    default: Any = None

    @property
    def required(self) -> bool:
        """Whether a request must set it (the template gives it no default)."""
        return self.default is None

    @property
    def unset(self) -> Any:
        """The value that means "not given": the template's ``""`` default of optional strings
        (``encryption_spec_key_name: ""`` is Google-managed encryption); None for the others."""
        return "" if self.kind == STRING and self.default == "" else None


# belongs in distillery.facts (the template's parameter list, with its types and defaults)
TEMPLATE_PARAMETERS: dict[str, TemplateParameter] = {
    "accelerator_type": TemplateParameter(STRING, facts.DEFAULT_ACCELERATOR),
    "api_endpoint": TemplateParameter(STRING, "aiplatform.googleapis.com/ui"),
    "dataset_uri": TemplateParameter(STRING),
    "enable_checkpoint_selection": TemplateParameter(STRING, facts.DEFAULT_CHECKPOINT_SELECTION),
    "enable_early_stopping": TemplateParameter(BOOLEAN, facts.DEFAULT_ENABLE_EARLY_STOPPING),
    "encryption_spec_key_name": TemplateParameter(STRING, ""),
    "evaluation_data_uri": TemplateParameter(STRING, ""),
    # The template's default is TEMPLATE_DEFAULT_EVALUATION_INTERVAL (100); the seed's is 20.
    "evaluation_interval": TemplateParameter(NUMBER_INTEGER, facts.DEFAULT_EVALUATION_INTERVAL),
    "evaluation_output_root_dir": TemplateParameter(STRING, ""),
    "learning_rate_multiplier": TemplateParameter(
        NUMBER_DOUBLE, facts.DEFAULT_LEARNING_RATE_MULTIPLIER
    ),
    # "": the pipeline's region (SPEC.md: the upload region defaults to the pipeline region).
    "location": TemplateParameter(STRING, ""),
    "max_context_length": TemplateParameter(STRING, ""),
    "model_display_name": TemplateParameter(STRING, DEFAULT_MODEL_DISPLAY_NAME),
    "project": TemplateParameter(STRING),
    "student_model_reference": TemplateParameter(STRING, facts.DEFAULT_STUDENT_MODEL),
    "teacher_model_reference": TemplateParameter(STRING, facts.DEFAULT_TEACHER_MODEL),
    "temperature": TemplateParameter(NUMBER_DOUBLE, 0.0),
    "tensorboard_resource_id": TemplateParameter(STRING, ""),
    "tpu_training_skip_cmek": TemplateParameter(BOOLEAN, False),
    "train_steps": TemplateParameter(NUMBER_INTEGER, facts.DEFAULT_TRAIN_STEPS),
    "version": TemplateParameter(STRING, "latest"),
}
REQUIRED_PARAMETERS: tuple[str, ...] = tuple(
    name for name, parameter in TEMPLATE_PARAMETERS.items() if parameter.required
)

_DESCRIPTIONS = {
    STRING: "a string",
    NUMBER_INTEGER: "an integer",
    NUMBER_DOUBLE: "a number",
    BOOLEAN: "a boolean (true or false)",
}


def typed_value(kind: str, value: Any) -> Any:
    """``value`` as the template's ``kind`` holds it: an ``int`` for an integral number, a
    ``float`` for a number, the value itself for a string or a boolean.

    Raises:
        ValueError: ``value`` is not of ``kind`` (the text says what was expected and got).
    """
    ok = False
    if kind == STRING:
        ok = isinstance(value, str)
    elif kind == BOOLEAN:
        ok = isinstance(value, bool)
    elif not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value):
        if kind == NUMBER_DOUBLE:
            return float(value)
        if kind == NUMBER_INTEGER and (isinstance(value, int) or value.is_integer()):
            return int(value)
    if not ok:
        raise ValueError(f"must be {_DESCRIPTIONS[kind]} ({kind}), got {value!r}")
    return value
