"""`tiktoken`: a byte-level BPE tokenizer run by tiktoken's encoder (several times faster than
HF `tokenizers`' on one core, measured in benchmarks/data_throughput.py).

The encoding is built from the HF tokenizer's own vocabulary and merges: every byte is a token
of rank = its value, the token the i-th merge makes has rank 256 + i (tiktoken merges the pair
whose result has the lowest rank, HF the pair with the earliest merge: the same order), and a
table maps ranks back to the HF ids. The pre-tokenizer regex is GPT-2's for `ByteLevel`
(use_regex) or the pattern of a `Split` before a regex-less `ByteLevel` (Llama-3, Qwen2 style);
added tokens become tiktoken's special tokens, found in the text as HF finds them. Options
tiktoken has no counterpart for (a normalizer other than NFC, prefix spaces, dropout,
subword prefixes, added tokens that strip spaces) make it Unsupported; `choose_engine` still
checks its ids against HF's on a sample before it is used.
"""

from __future__ import annotations

import json
import unicodedata

import numpy as np

from regrow.data.engines.base import ENGINES, TokenEngine, Unsupported

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in character for each byte (what byte-level vocabularies are written in)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _pattern(pre_tokenizer: dict | None) -> str:
    """The pre-tokenizer's splitting regex, when it is one tiktoken can run."""
    if pre_tokenizer is None:
        raise Unsupported("no pre-tokenizer (not a byte-level BPE)")
    steps = pre_tokenizer["pretokenizers"] if pre_tokenizer.get("type") == "Sequence" else [pre_tokenizer]
    *splits, last = steps
    if last.get("type") != "ByteLevel" or last.get("add_prefix_space"):
        raise Unsupported("the pre-tokenizer is not a ByteLevel without prefix space")
    if not splits and last.get("use_regex", True):
        return GPT2_PATTERN
    if len(splits) == 1 and not last.get("use_regex", True):
        split = splits[0]
        regex = (split.get("pattern") or {}).get("Regex")
        if split.get("type") == "Split" and regex and split.get("behavior") == "Isolated" and not split.get("invert"):
            return regex
    raise Unsupported(f"pre-tokenizer {json.dumps(pre_tokenizer)[:120]} has no tiktoken counterpart")


@ENGINES.register("tiktoken")
class TiktokenEngine(TokenEngine):
    """tiktoken's BPE built from a byte-level HF vocabulary and merges, ~4x faster; used when it reproduces hf on a sample"""

    def __init__(self, pattern: str, ranks: dict[bytes, int], specials: dict[str, int], ids: np.ndarray, nfc: bool):
        self.pattern, self.ranks, self.specials, self.ids, self.nfc = pattern, ranks, specials, ids, nfc
        self._encoding = None

    @classmethod
    def for_tokenizer(cls, tokenizer) -> TiktokenEngine:
        try:
            import tiktoken  # noqa: F401
        except ImportError:
            raise Unsupported("the tiktoken package is not installed") from None
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise Unsupported("a Python (slow) tokenizer")
        spec = json.loads(backend.to_str())
        model = spec.get("model") or {}
        if model.get("type") != "BPE":
            raise Unsupported(f"a {model.get('type')} model, not BPE")
        if model.get("dropout") or model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
            raise Unsupported("BPE dropout or subword prefixes / suffixes")
        normalizer = spec.get("normalizer")
        if normalizer is not None and normalizer.get("type") != "NFC":
            raise Unsupported(f"normalizer {normalizer.get('type')}")
        pattern = _pattern(spec.get("pre_tokenizer"))
        added = spec.get("added_tokens") or []
        if any(t.get("lstrip") or t.get("rstrip") or t.get("single_word") for t in added):
            raise Unsupported("added tokens that strip spaces or match whole words only")
        ranks, ids = _ranks(model, {token["id"] for token in added})
        specials = {}
        for token in added:
            specials[token["content"]] = len(ids)
            ids.append(token["id"])
        engine = cls(pattern, ranks, specials, np.asarray(ids, dtype=np.int64), normalizer is not None)
        try:
            engine._encoder()
        except ValueError as err:  # a regex tiktoken's engine cannot compile
            raise Unsupported(f"tiktoken refused the encoding: {err}") from err
        return engine

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_encoding": None}

    def _encoder(self):
        if self._encoding is None:
            import tiktoken

            self._encoding = tiktoken.Encoding("regrow", pat_str=self.pattern, mergeable_ranks=self.ranks,
                                               special_tokens=self.specials)
        return self._encoding

    def encode(self, documents: list[str]) -> list[np.ndarray]:
        encoding = self._encoder()
        out = []
        for doc in documents:
            text = unicodedata.normalize("NFC", doc) if self.nfc else doc
            out.append(self.ids[np.asarray(encoding.encode(text, allowed_special="all"), dtype=np.int64)])
        return out


def _ranks(model: dict, added_ids: set[int]) -> tuple[dict[bytes, int], list[int]]:
    """tiktoken ranks from the vocabulary and merges, and the HF id of each rank."""
    vocab: dict[str, int] = model.get("vocab") or {}
    to_byte = {char: b for b, char in bytes_to_unicode().items()}

    def as_bytes(token: str) -> bytes:
        try:
            return bytes(to_byte[char] for char in token)
        except KeyError:
            raise Unsupported(f"vocabulary token {token!r} is not byte-level") from None

    ranks: dict[bytes, int] = {}
    ids: list[int] = []
    for b, char in bytes_to_unicode().items():
        if char not in vocab:
            raise Unsupported(f"the vocabulary lacks the byte {b}")
        ranks[bytes([b])] = len(ids)
        ids.append(vocab[char])
    for merge in model.get("merges") or []:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        token = left + right
        if token not in vocab:
            raise Unsupported(f"merge {left!r} + {right!r} makes a token outside the vocabulary")
        key = as_bytes(token)
        if key in ranks:
            raise Unsupported(f"two merges make the token {token!r}")
        ranks[key] = len(ids)
        ids.append(vocab[token])
    if model.get("ignore_merges"):  # whole words found in the vocabulary are taken as they are, like tiktoken does
        for token, index in sorted(vocab.items(), key=lambda item: item[1]):
            key = as_bytes(token) if index not in added_ids else None
            if key is not None and key not in ranks:
                ranks[key] = len(ids)
                ids.append(index)
    return ranks, ids
