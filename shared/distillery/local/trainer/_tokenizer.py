"""The built-in student's tokenizer, trained on the training data (nothing is downloaded).

A BPE model over SentencePiece-style pieces: whitespace becomes ``▁`` and punctuation is split
off, so decoding restores the text exactly (``chart-topping,`` stays ``chart-topping,``). The
vocabulary is capped well above the number of distinct words of a small dataset, so frequent
words end up as single tokens (as a word-level tokenizer would) while unseen words still split
into known pieces. Characters outside the training text and the seeded alphabet become ``<unk>``.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from typing import Any

PAD_TOKEN = "<pad>"
EOS_TOKEN = "</s>"
UNK_TOKEN = "<unk>"
#: Pad first: T5 uses the pad id as the decoder start token.
SPECIAL_TOKENS = (PAD_TOKEN, EOS_TOKEN, UNK_TOKEN)
DEFAULT_VOCABULARY_SIZE = 8000

#: Seeded so that common characters missing from the training text still have a piece.
_ALPHABET = sorted(
    set(string.printable.replace("\x0b", "").replace("\x0c", ""))
    | {chr(code) for code in range(0xA1, 0x180)}
    | set("\u2018\u2019\u201c\u201d\u2013\u2014\u2026\u20ac\u2022")  # quotes, dashes, ...
)


def build_tokenizer(texts: Iterable[str], *, vocabulary_size: int = DEFAULT_VOCABULARY_SIZE) -> Any:
    """A ``PreTrainedTokenizerFast`` trained on ``texts`` (saved/loaded by transformers as usual).

    Raises nothing of its own; ``texts`` may be empty (the vocabulary is then the alphabet).
    """
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    library: Any = transformers  # untyped

    tokenizer = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocabulary_size,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=_ALPHABET,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return library.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=PAD_TOKEN, eos_token=EOS_TOKEN, unk_token=UNK_TOKEN
    )
