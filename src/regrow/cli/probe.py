"""`regrow probe --model DIR... --data DATA_DIR --finetune DOMAIN --steps N --lr LR`.

Fine-tunes each checkpoint with the same recipe and reports its in-domain gain and
out-of-domain loss change, as a curve against the checkpoint's pre-training tokens (`--plot`).
"""

from __future__ import annotations

from regrow.analysis.plots import probe_figure
from regrow.cli.argtypes import finite_float
from regrow.cli.commands import COMMANDS
from regrow.cli.outputs import check_output_args, emit
from regrow.device import DEVICES
from regrow.paths import check_output_dir
from regrow.study.probe import ProbeRecipe, run_probe


@COMMANDS.register("probe")
def register(subparsers) -> None:
    parser = subparsers.add_parser("probe", help="fine-tuning degradation: same fine-tuning on every checkpoint")
    parser.add_argument("--model", nargs="+", required=True, metavar="DIR", help="HF model folders (e.g. snapshots of one run)")
    parser.add_argument("--data", required=True, help="a data folder made by `regrow data prepare`")
    parser.add_argument("--finetune", required=True, metavar="DOMAIN", help="the domain to fine-tune on")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--lr", type=finite_float, required=True)
    parser.add_argument("--schedule", default="constant", help="schedule name (constant, cosine, wsd, ...)")
    parser.add_argument("--warmup-steps", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--eval-tokens", type=int, default=65536, help="validation tokens per domain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--work-dir", default=None, help="keep the fine-tuning runs here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--plot", default=None, metavar="FILE.png")
    parser.add_argument("--out", default=None, metavar="FILE.json", help="write the results as JSON")
    parser.set_defaults(func=run)


def run(args) -> int:
    check_output_args(args, "kind", "models")
    if args.work_dir:
        check_output_dir(args.work_dir, "--work-dir", what="a probe work folder",
                         own=lambda p: all(entry.name.startswith("probe-") for entry in p.iterdir()))
    recipe = ProbeRecipe(args.finetune, args.steps, args.lr, args.batch_size, args.seq_len, args.warmup_steps,
                         args.schedule, args.eval_tokens, args.seed, args.device)
    record = run_probe(args.model, args.data, recipe, args.work_dir)
    results = record["models"]
    if emit(args, record, lambda r: probe_figure(r["models"]), printed=results):
        return 0
    print(f"fine-tuned on {args.finetune!r}: {args.steps} steps at LR {args.lr:g} ({args.schedule})")
    print(f"{'model':<44}{'tokens':>12}{'in-domain gain':>16}{'out-of-domain':>15}")
    for r in results:
        tokens = "-" if r["tokens"] is None else f"{r['tokens']:,}"
        print(f"{r['model'][-44:]:<44}{tokens:>12}{r['in_domain_gain']:>+16.4f}{r['out_of_domain_change']:>+15.4f}")
    return 0
