"""The token store: one folder per domain with memory-mapped token arrays and a manifest.

Layout of a DATA_DIR:

    manifest.json             {"version": 1, "domains": {NAME: DomainInfo}}
    NAME/train.bin            tokens of the training documents, EOS after each document
    NAME/validation.bin       tokens of the validation documents, same format

Tokens are uint16 when the vocabulary fits, else uint32. Readers memory-map the arrays, so a
store larger than memory costs nothing to open.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from regrow.errors import RegrowError
from regrow.reading import read_json

MANIFEST = "manifest.json"
SPLITS = ("train", "validation")


def read_manifest(path: Path) -> dict:
    """A data folder's manifest, its structure checked (every domain's dtype, token counts, tokenizer)."""
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
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok or "/" in str(name) or str(name).startswith("."):
            raise RegrowError(f"manifest {str(path)!r} is damaged: domain {name!r} lacks a valid dtype, token counts "
                              "or tokenizer; prepare that domain again")
    return manifest


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


@dataclass(frozen=True)
class Domain:
    """One prepared domain: its name, manifest entry and memory-mapped splits."""

    name: str
    info: dict
    root: Path

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.info["dtype"])

    def tokens(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise RegrowError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
        count = self.info["splits"][split]["tokens"]
        if count == 0:
            return np.zeros(0, dtype=self.dtype)
        return np.memmap(self.check_file(split), dtype=self.dtype, mode="r", shape=(count,))

    def check_file(self, split: str) -> Path:
        """The split's token file, which must hold exactly the manifest's token count."""
        path = self.root / self.name / f"{split}.bin"
        expected = self.info["splits"][split]["tokens"] * self.dtype.itemsize
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
            for split in SPLITS:
                self.domain(name).check_file(split)

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
