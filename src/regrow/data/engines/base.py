"""What a tokenizer engine is, and how `data prepare` picks one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from regrow.errors import RegrowError
from regrow.registry import Registry


class Unsupported(Exception):
    """This engine cannot reproduce that tokenizer (the message says why)."""


class TokenEngine:
    """Turns documents into token ids. Built in the main process from a loaded tokenizer, then
    pickled to the tokenizing workers: it holds plain data and builds its encoder on first use.

    `reference`: the engine every other one must agree with. `parallel`: may run in worker
    processes (a Python tokenizer object may not pickle)."""

    name: str
    reference = False
    parallel = True

    @classmethod
    def for_tokenizer(cls, tokenizer) -> TokenEngine:
        """The engine for `tokenizer`; raises Unsupported when this engine cannot reproduce it."""
        raise NotImplementedError

    def encode(self, documents: list[str]) -> list[np.ndarray]:
        """Token ids of each document (no special tokens added), as int64 arrays."""
        raise NotImplementedError


ENGINES: Registry[type[TokenEngine]] = Registry("tokenizer engine")
SAMPLE_BYTES = 1 << 20  # the head of the input a faster engine must reproduce exactly (~1 s of HF on one core)


@dataclass(frozen=True)
class EngineChoice:
    """The engine `data prepare` uses and why (recorded in the domain's manifest entry)."""

    engine: TokenEngine
    reason: str
    checked_documents: int
    checked_bytes: int

    def to_dict(self) -> dict:
        return {"name": self.engine.name, "reason": self.reason, "checked_documents": self.checked_documents,
                "checked_bytes": self.checked_bytes}


def choose_engine(tokenizer, requested: str, sample: list[str]) -> EngineChoice:
    """`auto`: the first non-reference engine that supports the tokenizer and gives the reference's
    ids on every document of `sample`, else the reference. A named engine must do the same or
    it is an error (a forced engine never silently changes the tokens)."""
    references = ENGINES.where(lambda engine: engine.reference)
    reference = ENGINES[references[0]].for_tokenizer(tokenizer)
    names = [requested] if requested != "auto" else [n for n in ENGINES if n not in references]
    checked_bytes = sum(len(doc.encode("utf-8", "surrogatepass")) for doc in sample)
    reasons = []
    for name in names:
        engine_class = ENGINES[name]
        if engine_class.reference:
            return EngineChoice(reference, "requested", 0, 0)
        try:
            engine = engine_class.for_tokenizer(tokenizer)
        except Unsupported as why:
            reasons.append(f"{name}: {why}")
            continue
        mismatch = first_mismatch(engine, reference, sample)
        if mismatch is None:
            return EngineChoice(engine, f"reproduced {reference.name} on the sample", len(sample), checked_bytes)
        reasons.append(f"{name}: gave other ids than {reference.name} for document {mismatch} of the sample")
    if requested != "auto":
        raise RegrowError(f"--engine {requested} cannot be used for this tokenizer ({'; '.join(reasons)}); "
                          "use --engine auto")
    return EngineChoice(reference, "; ".join(reasons) or "no other engine", 0, 0)


def first_mismatch(engine: TokenEngine, reference: TokenEngine, documents: list[str]) -> int | None:
    """Index of the first document the two engines tokenize differently (None: all agree)."""
    for start in range(0, len(documents), 256):
        batch = documents[start : start + 256]
        for i, (mine, theirs) in enumerate(zip(engine.encode(batch), reference.encode(batch))):
            if not np.array_equal(mine, theirs):
                return start + i
    return None
