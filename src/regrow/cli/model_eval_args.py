"""Arguments and checks shared by the commands that evaluate model folders on a data folder."""

from __future__ import annotations

from regrow.data.store import TokenStore
from regrow.data.tokenizer import fingerprint, load_tokenizer_if_any
from regrow.device import DEVICES
from regrow.errors import RegrowError
from regrow.models.hf import check_compatible, load_model


def add_eval_arguments(parser, data_required: bool = True) -> None:
    parser.add_argument("--data", required=data_required, help="a data folder made by `regrow data prepare`")
    parser.add_argument("--domains", nargs="*", default=None, help="domains to evaluate (default: all)")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=1 << 20, help="validation tokens per domain at most")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--trust-remote-code", action="store_true")


def open_data(args) -> tuple[TokenStore, list[str]]:
    """The data folder and the domains to evaluate, after checking the numeric flags."""
    for flag, value in (("--seq-len", args.seq_len), ("--batch-size", args.batch_size), ("--max-tokens", args.max_tokens)):
        if value < 1:
            raise RegrowError(f"{flag} is {value}; it must be >= 1")
    store = TokenStore(args.data)
    domains = args.domains or store.domain_names
    for name in domains:
        store.domain(name)
    return store, domains


def load_checked_model(path: str, store: TokenStore, domains: list[str], args):
    """An HF model folder that fits the data: vocabulary, context length and tokenizer checked."""
    model = load_model(path, args.trust_remote_code)
    check_compatible(model, store.vocab_size(), args.seq_len, "--seq-len")
    tokenizer = load_tokenizer_if_any(path, args.trust_remote_code)
    if tokenizer is not None:
        store.check_tokenized_with(fingerprint(tokenizer), f"the model's tokenizer ({path})", domains)
    return model
