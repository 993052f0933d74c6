"""Tokenizer engines for `regrow data prepare`, one file each, registered in ENGINES: `hf` (the
tokenizer's own HF `tokenizers` backend; always right) and `tiktoken` (a tiktoken encoding
built from a byte-level BPE's vocabulary and merges: several times faster). `choose_engine`
uses a faster engine only after it reproduced `hf` token for token on a sample of the input.

Adding an engine = one file with an `@ENGINES.register("name")` TokenEngine subclass (built-in
ones are imported here)."""

from regrow.data.engines import hf, tiktoken_bpe  # noqa: F401  (registration)
from regrow.data.engines.base import (
    ENGINES,
    SAMPLE_BYTES,
    EngineChoice,
    TokenEngine,
    Unsupported,
    choose_engine,
)

__all__ = ["ENGINES", "SAMPLE_BYTES", "EngineChoice", "TokenEngine", "Unsupported", "choose_engine"]
