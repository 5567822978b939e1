"""The local step-by-step distillation trainer (CPU; torch + transformers).

The local Vertex AI emulator calls :func:`train` to really distill a student: a seq2seq model
trained multi-task on ``predict: <input>`` → label and ``explain: <input>`` → rationale (Hsieh et
al. 2023), reporting Vertex AI's tuning metrics. :func:`load_predictor` serves a saved model and
:func:`label_with_teacher` labels an unlabeled dataset with a local model.

Importing this package is cheap: torch and transformers are imported only when training or
predicting.
"""

from distillery.local.trainer._loop import train
from distillery.local.trainer._predict import Predictor, label_with_teacher, load_predictor
from distillery.local.trainer._types import (
    ProgressEvent,
    TrainingCancelledError,
    TrainingConfig,
    TrainingError,
    TrainingExample,
    TrainingResult,
)

__all__ = [
    "Predictor",
    "ProgressEvent",
    "TrainingCancelledError",
    "TrainingConfig",
    "TrainingError",
    "TrainingExample",
    "TrainingResult",
    "label_with_teacher",
    "load_predictor",
    "train",
]
