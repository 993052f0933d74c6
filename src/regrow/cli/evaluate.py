"""`regrow eval --model DIR (--data DATA_DIR | --tasks TASK...) [--json]`.

Per-domain loss and perplexity on a data folder, and/or downstream tasks through
lm-evaluation-harness (`--tasks`, the `eval` extra; local YAML tasks with `--include-path`).
"""

from __future__ import annotations

import json

import torch

from regrow.cli.commands import COMMANDS
from regrow.cli.model_eval_args import add_eval_arguments, load_checked_model, open_data
from regrow.device import resolve_device
from regrow.errors import RegrowError
from regrow.models.evaluate import evaluate_domains


@COMMANDS.register("eval")
def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="evaluate a model: per-domain loss, and downstream tasks (lm-eval)")
    parser.add_argument("--model", required=True, help="an HF model folder")
    add_eval_arguments(parser, data_required=False)
    parser.add_argument("--tasks", nargs="+", default=None, help="lm-evaluation-harness tasks (names or local YAML tasks)")
    parser.add_argument("--include-path", default=None, help="a folder of harness task YAML files")
    parser.add_argument("--allow-code", action="store_true",
                        help="let task YAML files in --include-path run their Python hooks (!function); off by "
                             "default: regrow runs no code from files it reads")
    parser.add_argument("--num-fewshot", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None, help="examples per task at most")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.data is None and not args.tasks:
        raise RegrowError("nothing to evaluate: give --data DATA_DIR (per-domain loss) and/or --tasks TASK...")
    if args.allow_code and not args.include_path:
        raise RegrowError("--allow-code concerns the task files of --include-path only; without it, it changes nothing")
    if args.limit is not None and args.limit < 1:
        raise RegrowError(f"--limit is {args.limit}; it must be >= 1")
    if args.num_fewshot is not None and args.num_fewshot < 0:
        raise RegrowError(f"--num-fewshot is {args.num_fewshot}; it must be >= 0")
    device = resolve_device(args.device)
    out = {}
    if args.data is not None:
        store, domains = open_data(args)
        model = load_checked_model(args.model, store, domains, args).to(device)
        with torch.inference_mode():
            out["domains"] = evaluate_domains(model, store, domains, args.seq_len, args.batch_size, args.max_tokens, device)
        del model
    if args.tasks:
        from regrow.analysis.downstream import run_tasks

        out["tasks"] = run_tasks(args.model, args.tasks, args.include_path, args.num_fewshot, args.limit,
                                 args.batch_size, device.type, args.trust_remote_code, args.seed, args.allow_code)
    if args.json:
        print(json.dumps(out["domains"] if list(out) == ["domains"] else out, indent=2))
        return 0
    if "domains" in out:
        print(f"{'domain':<20}{'loss':>10}{'perplexity':>14}{'tokens':>12}")
        for name, r in out["domains"].items():
            print(f"{name:<20}{r['loss']:>10.4f}{r['perplexity']:>14.2f}{r['tokens']:>12,}")
    for task, metrics in out.get("tasks", {}).items():
        print(f"{task}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return 0
