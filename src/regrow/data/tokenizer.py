"""Tokenizers: train a byte-level BPE with HF `tokenizers`, load any local HF tokenizer folder.

Every tokenizer regrow writes is a plain HF folder that `AutoTokenizer.from_pretrained` loads,
with `<|endoftext|>` as its end-of-sequence token (the separator between documents).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path

from regrow.atomic import atomic_dir
from regrow.errors import RegrowError
from regrow.paths import only_entries

EOS_TOKEN = "<|endoftext|>"
MIN_VOCAB = 256 + 1  # every byte, plus the end-of-sequence token


# what `save_pretrained` writes for a tokenizer (a folder of only these is a tokenizer folder)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "chat_template.jinja", "chat_template.json", "vocab.json", "merges.txt", "tokenizer.model",
                   "vocab.txt", "spiece.model")


def has_tokenizer_files(folder: Path) -> bool:
    return any((folder / name).is_file() for name in TOKENIZER_FILES if name != "special_tokens_map.json")


def is_tokenizer_dir(folder: Path) -> bool:
    """A folder holding a tokenizer and nothing else (what `regrow tokenizer train` may replace)."""
    return only_entries(*TOKENIZER_FILES, required=("tokenizer.json",))(folder)


def train_bpe(documents: Iterable[str], vocab_size: int, out_dir: str | Path, min_frequency: int = 2,
              inputs: Callable[[], str] = lambda: "") -> Path:
    """Train a byte-level BPE on `documents` and save it as an HF tokenizer folder (atomically).
    `inputs` describes what was read, for the message when it held no text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < MIN_VOCAB:
        raise RegrowError(f"--vocab-size {vocab_size} is too small; a byte-level BPE needs at least {MIN_VOCAB}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    seen = {"docs": 0}

    def counted() -> Iterable[str]:
        for doc in documents:
            seen["docs"] += 1
            yield doc

    tokenizer.train_from_iterator(counted(), trainer=trainer)
    if seen["docs"] == 0:
        raise RegrowError(f"the tokenizer inputs hold no text (every document was empty): {inputs()}")
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS_TOKEN, bos_token=EOS_TOKEN)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        wrapped.save_pretrained(tmp)
    return out_dir


def load_tokenizer(path: str | Path, trust_remote_code: bool = False):
    """Load a local HF tokenizer folder; it must define an end-of-sequence token."""
    path = Path(path)
    if not path.is_dir():
        raise RegrowError(f"tokenizer {str(path)!r} is not a folder (train one with `regrow tokenizer train`)")
    if not has_tokenizer_files(path):
        raise RegrowError(f"tokenizer {str(path)!r} holds no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}, ...)")
    tokenizer = _load(path, trust_remote_code)
    if tokenizer.eos_token_id is None:
        raise RegrowError(f"tokenizer {str(path)!r} has no end-of-sequence token; regrow separates documents with it")
    return tokenizer


def _load(path: Path, trust_remote_code: bool):
    """AutoTokenizer on a folder with tokenizer files; a file that cannot be read is named."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except Exception as err:  # noqa: BLE001  (a damaged tokenizer file fails in many ways, in Python and in Rust)
        first = (str(err).splitlines() or [type(err).__name__])[0][:300]
        files = ", ".join(name for name in TOKENIZER_FILES if (path / name).is_file())
        raise RegrowError(f"the tokenizer in {str(path)!r} ({files}) could not be loaded: {first}; repair or "
                          "remove those files") from err


def load_tokenizer_if_any(path: str | Path, trust_remote_code: bool = False):
    """The tokenizer saved in a model folder, or None when the folder has no tokenizer files
    (callers then check only the vocabulary size; transformers 5 would build an empty tokenizer
    of the model's class for such a folder). Tokenizer files that cannot be loaded are an
    error, never taken for "no tokenizer": that would drop the tokenizer from an export and
    weaken the same-tokenizer check of calibration and evaluation data."""
    path = Path(path)
    if not has_tokenizer_files(path):
        return None
    return _load(path, trust_remote_code)


def vocab_size_of(tokenizer) -> int:
    """Number of token ids the tokenizer can produce (added tokens included)."""
    return len(tokenizer)


def fingerprint(tokenizer) -> str:
    """A stable hash of the tokenizer's vocabulary and merges, to tell data of two tokenizers apart."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        model = spec.get("model") or {}
        added = [(t.get("id"), t.get("content")) for t in spec.get("added_tokens") or []]
        # only what decides the token ids: options that a tokenizer class re-spells (e.g. a
        # continuing_subword_prefix of None vs "") must not make the same vocabulary look different
        payload = json.dumps({"type": model.get("type"), "vocab": model.get("vocab"), "merges": model.get("merges"),
                              "added": added}, sort_keys=True)
    else:
        payload = json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
