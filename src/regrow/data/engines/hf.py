"""`hf`: the tokenizer's own HF `tokenizers` backend (the reference every engine must match)."""

from __future__ import annotations

import numpy as np

from regrow.data.engines.base import ENGINES, TokenEngine

GROUP_CHARS = 64 << 10


@ENGINES.register("hf")
class HFEngine(TokenEngine):
    """the tokenizer's own HF `tokenizers` backend: the reference every other engine must reproduce

    A fast tokenizer is sent to the workers as its JSON; a slow (Python) one runs in the main process."""

    reference = True

    def __init__(self, tokenizer_json: str | None, slow_tokenizer=None):
        self.tokenizer_json = tokenizer_json
        self.slow = slow_tokenizer
        self.parallel = slow_tokenizer is None
        self._backend = None

    @classmethod
    def for_tokenizer(cls, tokenizer) -> HFEngine:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        return cls(backend.to_str()) if backend is not None else cls(None, tokenizer)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_backend": None}

    def encode(self, documents: list[str]) -> list[np.ndarray]:
        if self.slow is not None:
            return [np.asarray(self.slow.encode(d, add_special_tokens=False), dtype=np.int64) for d in documents]
        if self._backend is None:
            from tokenizers import Tokenizer

            self._backend = Tokenizer.from_str(self.tokenizer_json)
        out = []
        for group in _groups(documents, GROUP_CHARS):  # an Encoding costs ~100x its text: small batches
            encodings = self._backend.encode_batch_fast(group, add_special_tokens=False)  # no offsets
            out += [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        return out


def _groups(documents: list[str], chars: int):
    group, size = [], 0
    for doc in documents:
        group.append(doc)
        size += len(doc)
        if size >= chars:
            yield group
            group, size = [], 0
    if group:
        yield group
