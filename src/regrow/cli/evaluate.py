"""`regrow eval --model DIR --data DATA_DIR [--json]`: per-domain loss and perplexity."""

from __future__ import annotations

import json

import torch

from regrow.data.store import TokenStore
from regrow.data.tokenizer import fingerprint, load_tokenizer_if_any
from regrow.errors import RegrowError
from regrow.models.hf import check_compatible, load_model
from regrow.train.evaluate import evaluate_domains
from regrow.train.trainer import resolve_device


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a model on every domain of a data folder")
    parser.add_argument("--model", required=True, help="an HF model folder")
    parser.add_argument("--data", required=True, help="a data folder made by `regrow data prepare`")
    parser.add_argument("--domains", nargs="*", default=None, help="domains to evaluate (default: all)")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=1 << 20, help="validation tokens per domain at most")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(func=run)


def run(args) -> int:
    for flag, value in (("--seq-len", args.seq_len), ("--batch-size", args.batch_size), ("--max-tokens", args.max_tokens)):
        if value < 1:
            raise RegrowError(f"{flag} is {value}; it must be >= 1")
    store = TokenStore(args.data)
    domains = args.domains or store.domain_names
    model = load_model(args.model, args.trust_remote_code)
    check_compatible(model, store.vocab_size(), args.seq_len, "--seq-len")
    tokenizer = load_tokenizer_if_any(args.model, args.trust_remote_code)
    if tokenizer is not None:
        store.check_tokenized_with(fingerprint(tokenizer), f"the model's tokenizer ({args.model})", domains)
    device = resolve_device(args.device)
    model.to(device)
    with torch.inference_mode():
        results = evaluate_domains(model, store, domains, args.seq_len, args.batch_size, args.max_tokens, device)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"{'domain':<20}{'loss':>10}{'perplexity':>14}{'tokens':>12}")
        for name, r in results.items():
            print(f"{name:<20}{r['loss']:>10.4f}{r['perplexity']:>14.2f}{r['tokens']:>12,}")
    return 0
