"""The token store: one folder per domain with memory-mapped token shards and a manifest.

Layout of a DATA_DIR:

    manifest.json             {"version": 1, "domains": {NAME: DomainInfo}}
    NAME/train-00000.bin      tokens of the training documents, EOS after each document, cut into
    NAME/train-00001.bin      shards of at most `shard_bytes` (a document may span two shards)
    NAME/validation-00000.bin the validation documents, same format
    NAME/domain.json          the domain's manifest entry

A domain's entry lists its shards per split (`shards: {split: [{file, tokens}]}`); stores made
before shards existed have one `train.bin` / `validation.bin` per domain and no `shards` key,
and read the same. Tokens are uint16 when the vocabulary fits, else uint32. Readers
memory-map the shards and see a split as one stream, so a store larger than memory costs
nothing to open and the sampler draws the same sequences from a sharded and a one-file domain.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from regrow.errors import RegrowError
from regrow.reading import read_json

MANIFEST = "manifest.json"
SPLITS = ("train", "validation")
_SHARD_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.bin$")


def read_manifest(path: Path) -> dict:
    """A data folder's manifest, its structure checked (every domain's dtype, token counts, shards, tokenizer)."""
    manifest = read_json(path, "manifest", ("domains",))
    domains = manifest["domains"]
    if not isinstance(domains, dict):
        raise RegrowError(f"manifest {str(path)!r} is damaged: `domains` is not a mapping")
    for name, info in domains.items():
        try:
            np.dtype(info["dtype"])
            counts = [info["splits"][s]["tokens"] for s in SPLITS]
            tokenizer = info["tokenizer"]
            ok = all(isinstance(c, int) and c >= 0 for c in counts) and {"fingerprint", "vocab_size"} <= set(tokenizer)
            ok = ok and all(_shards_agree(info, split) for split in SPLITS)
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok or "/" in str(name) or str(name).startswith("."):
            raise RegrowError(f"manifest {str(path)!r} is damaged: domain {name!r} lacks a valid dtype, token counts, "
                              "shard list or tokenizer; prepare that domain again")
    return manifest


def _shards_agree(info: dict, split: str) -> bool:
    """A split's shard list (when there is one) names safe files whose token counts add up."""
    if "shards" not in info:
        return True
    shards = info["shards"][split]
    return (isinstance(shards, list)
            and all(isinstance(s["tokens"], int) and s["tokens"] > 0 and _SHARD_NAME.match(str(s["file"]))
                    for s in shards)
            and sum(s["tokens"] for s in shards) == info["splits"][split]["tokens"])


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


class TokenStream:
    """A split's shards read as one array of tokens: its length, contiguous slices (which may
    span shards) and single tokens. `np.asarray(stream)` reads it whole (tests, small data)."""

    def __init__(self, parts: list[np.ndarray], dtype: np.dtype):
        self.parts = parts
        self.dtype = dtype
        self._ends = np.cumsum([len(p) for p in parts], dtype=np.int64)

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise IndexError("a token stream is sliced contiguously (step 1)")
            return self._range(start, max(start, stop))
        index = int(key)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"token {key} is outside a stream of {len(self)}")
        return self._range(index, index + 1)[0]

    def _range(self, start: int, stop: int) -> np.ndarray:
        if len(self.parts) == 1:
            return self.parts[0][start:stop]
        first = int(np.searchsorted(self._ends, start, side="right"))
        pieces = []
        while start < stop:
            begin = int(self._ends[first - 1]) if first else 0
            end = min(stop, int(self._ends[first]))
            pieces.append(self.parts[first][start - begin : end - begin])
            start, first = end, first + 1
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces) if pieces else np.zeros(0, self.dtype)

    def __array__(self, dtype=None, copy=None):
        whole = self._range(0, len(self))
        return whole.astype(dtype) if dtype is not None else np.array(whole)


@dataclass(frozen=True)
class Domain:
    """One prepared domain: its name, manifest entry and memory-mapped splits."""

    name: str
    info: dict
    root: Path

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.info["dtype"])

    def shards(self, split: str) -> list[dict]:
        """The split's shard files and token counts (one `SPLIT.bin` for a store made before shards)."""
        if split not in SPLITS:
            raise RegrowError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
        if "shards" in self.info:
            return self.info["shards"][split]
        count = self.info["splits"][split]["tokens"]
        return [{"file": f"{split}.bin", "tokens": count}] if count else []

    def tokens(self, split: str) -> TokenStream:
        parts = [np.memmap(self.check_file(shard), dtype=self.dtype, mode="r", shape=(shard["tokens"],))
                 for shard in self.shards(split)]
        return TokenStream(parts, self.dtype)

    def check_file(self, shard: dict) -> Path:
        """A shard's token file, which must hold exactly the manifest's token count."""
        path = self.root / self.name / shard["file"]
        expected = shard["tokens"] * self.dtype.itemsize
        if not path.is_file():
            raise RegrowError(f"token file {str(path)!r} is missing (the manifest lists {expected} bytes of tokens)")
        size = path.stat().st_size
        if size != expected:
            state = "truncated" if size < expected else "longer than its manifest says"
            raise RegrowError(f"token file {str(path)!r} is {state}: {size} bytes, the manifest says {expected}; "
                              "prepare the domain again")
        return path


class TokenStore:
    """Read access to a DATA_DIR: its manifest and its domains."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest = self.path / MANIFEST
        if not self.path.is_dir():
            raise RegrowError(f"data folder {str(self.path)!r} is not a folder (make one with `regrow data prepare`)")
        if not manifest.is_file():
            raise RegrowError(
                f"data folder {str(self.path)!r} has no {MANIFEST} (make one with `regrow data prepare`)"
            )
        self.manifest = read_manifest(manifest)
        for name in self.domain_names:
            domain = self.domain(name)
            for split in SPLITS:
                for shard in domain.shards(split):
                    domain.check_file(shard)

    @property
    def domain_names(self) -> list[str]:
        return sorted(self.manifest["domains"])

    def domain(self, name: str) -> Domain:
        if name not in self.manifest["domains"]:
            raise RegrowError(
                f"domain {name!r} is not in data folder {str(self.path)!r}; it has: "
                f"{', '.join(self.domain_names) or '(none)'}"
            )
        return Domain(name, self.manifest["domains"][name], self.path)

    def tokenizer_fingerprints(self) -> dict[str, str]:
        return {n: d["tokenizer"]["fingerprint"] for n, d in self.manifest["domains"].items()}

    def check_tokenized_with(self, fingerprint: str, owner: str, domains: list[str] | None = None) -> None:
        """Refuse domains (default: all) tokenized by another tokenizer than `owner` (whose fingerprint is given)."""
        for name in domains if domains is not None else self.domain_names:
            if self.domain(name).info["tokenizer"]["fingerprint"] != fingerprint:
                raise RegrowError(f"domain {name!r} of {str(self.path)!r} was tokenized with another tokenizer: another "
                                  f"vocabulary than {owner}; prepare the data with that tokenizer")

    def vocab_size(self) -> int:
        """The largest vocabulary among the domains' tokenizers."""
        return max(d["tokenizer"]["vocab_size"] for d in self.manifest["domains"].values())
