"""The student model: the built-in small T5, local checkpoints, and what is saved with a model.

Only local directories are ever loaded (``local_files_only``): nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from distillery.local.trainer._data import EXPLAIN_PREFIX, PREDICT_PREFIX
from distillery.local.trainer._types import TrainingError

logger = logging.getLogger(__name__)

#: Written next to the weights: how the model expects its prompts.
METADATA_FILE = "distillery_trainer.json"
METADATA_KIND = "distillery.local.trainer/model"


@dataclass(frozen=True)
class StudentArchitecture:
    """The built-in student: a T5 small enough to train in seconds on two CPU cores."""

    d_model: int = 128
    d_ff: int = 256
    num_layers: int = 2
    num_decoder_layers: int = 2
    num_heads: int = 4
    d_kv: int = 32
    dropout_rate: float = 0.0


BUILT_IN_ARCHITECTURE = StudentArchitecture()


@dataclass(frozen=True)
class ModelMetadata:
    """What :func:`~distillery.local.trainer.load_predictor` needs beyond the weights and
    tokenizer."""

    predict_prefix: str = PREDICT_PREFIX
    explain_prefix: str = EXPLAIN_PREFIX
    #: Whether the model was trained on the explain task (so it can produce rationales).
    multi_task: bool = False
    max_input_tokens: int = 7168
    max_output_tokens: int = 1024
    selected_step: int = 0

    def to_json(self) -> str:
        """The metadata file's content."""
        return json.dumps({"kind": METADATA_KIND, **asdict(self)}, indent=2) + "\n"


@contextlib.contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """No tqdm bars from transformers while saving or loading (they are noise in job logs)."""
    from transformers.utils import logging

    transformers_logging: Any = logging  # untyped
    enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            transformers_logging.enable_progress_bar()


def build_student(
    tokenizer: Any, *, seed: int, architecture: StudentArchitecture = BUILT_IN_ARCHITECTURE
) -> Any:
    """A freshly initialised ``T5ForConditionalGeneration`` sized for ``tokenizer``.

    The initial weights depend only on ``seed`` and the vocabulary size.
    """
    import torch
    import transformers

    library: Any = transformers  # untyped: its configs take free keyword arguments
    config = library.T5Config(
        vocab_size=len(tokenizer),
        d_model=architecture.d_model,
        d_ff=architecture.d_ff,
        d_kv=architecture.d_kv,
        num_layers=architecture.num_layers,
        num_decoder_layers=architecture.num_decoder_layers,
        num_heads=architecture.num_heads,
        dropout_rate=architecture.dropout_rate,
        feed_forward_proj="relu",
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = library.T5ForConditionalGeneration(config)
    model.generation_config = library.GenerationConfig(
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return model


def load_seq2seq(model_dir: Path | str) -> tuple[Any, Any]:
    """The model and tokenizer saved in the local directory ``model_dir``.

    Raises:
        TrainingError: ``model_dir`` is not a directory holding a seq2seq model and tokenizer.
    """
    path = Path(model_dir)
    if not path.is_dir():
        raise TrainingError(f"model directory {path} does not exist")
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        with _quiet_progress_bars():
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModelForSeq2SeqLM.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise TrainingError(f"cannot load a seq2seq model from {path}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        raise TrainingError(f"the tokenizer in {path} has no padding token")
    return model, tokenizer


def read_metadata(model_dir: Path) -> ModelMetadata | None:
    """The metadata saved with a model trained here, or None for a foreign checkpoint.

    Raises:
        TrainingError: the metadata file exists but is not valid.
    """
    path = model_dir / METADATA_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.pop("kind", None) != METADATA_KIND:
            raise ValueError(f"kind is not {METADATA_KIND}")
        return ModelMetadata(**data)
    except (ValueError, TypeError) as exc:
        raise TrainingError(f"invalid model metadata {path}: {exc}") from exc


def save_model(model: Any, tokenizer: Any, model_dir: Path, metadata: ModelMetadata) -> None:
    """Save weights (safetensors), tokenizer and metadata into ``model_dir``.

    Raises:
        OSError: the directory cannot be written.
    """
    model_dir.mkdir(parents=True, exist_ok=True)
    with _quiet_progress_bars():
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
    (model_dir / METADATA_FILE).write_text(metadata.to_json(), encoding="utf-8")
