"""`regrow sensitivity --model DIR... --data DATA_DIR [--gamma G...] [--seeds K] [--json]`.

Loss increase under Gaussian parameter perturbation (docs/ALGORITHMS.md §6) per model and domain,
mean and spread over noise seeds; over several checkpoints of one run it draws sensitivity
against their pre-training tokens (`--plot`). `--out FILE.json` keeps the results (a study's
`analysis/` folder puts them in its report).
"""

from __future__ import annotations

from regrow.analysis.plots import sensitivity_figure
from regrow.analysis.sensitivity import NOISES, check_sensitivity_args, sensitivity_of_models
from regrow.cli.argtypes import finite_float
from regrow.cli.commands import COMMANDS
from regrow.cli.model_eval_args import add_eval_arguments, load_checked_model, open_data
from regrow.cli.outputs import check_output_args, emit
from regrow.device import resolve_device


@COMMANDS.register("sensitivity")
def register(subparsers) -> None:
    parser = subparsers.add_parser("sensitivity", help="loss increase under parameter perturbation, per checkpoint")
    parser.add_argument("--model", nargs="+", required=True, metavar="DIR", help="HF model folders (e.g. snapshots of one run)")
    add_eval_arguments(parser)
    parser.add_argument("--gamma", nargs="+", type=finite_float, default=[0.5, 1.0], help="perturbation scales")
    parser.add_argument("--seeds", type=int, default=3, help="noise draws per gamma")
    parser.add_argument("--noise", choices=NOISES, default="init",
                        help="sigma of each tensor: its initialisation std (matrices only), its own RMS, or 1")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--plot", default=None, metavar="FILE.png", help="draw sensitivity against pre-training tokens")
    parser.add_argument("--out", default=None, metavar="FILE.json", help="write the results as JSON")
    parser.set_defaults(func=run)


def run(args) -> int:
    check_output_args(args, "kind", "models")
    check_sensitivity_args(args.gamma, args.seeds, args.noise)
    store, domains = open_data(args)
    result = sensitivity_of_models(args.model, store, domains, args.gamma, args.seeds, args.noise, args.seq_len,
                                   args.batch_size, args.max_tokens, resolve_device(args.device),
                                   lambda path: load_checked_model(path, store, domains, args))
    models = result["models"]
    if emit(args, result, lambda r: sensitivity_figure(r["models"])):
        return 0
    print(f"noise: {args.noise}, {args.seeds} seed(s); loss increase mean ± sd over seeds")
    print(f"{'model':<40}{'tokens':>12}{'gamma':>8}  " + "  ".join(f"{d:>18}" for d in domains))
    for m in models:
        tokens = "-" if m["tokens"] is None else f"{m['tokens']:,}"
        for gamma, per_domain in m["sensitivity"].items():
            cells = "  ".join(f"{per_domain[d]['mean']:>+9.4f} ± {per_domain[d]['sd']:<6.4f}" for d in domains)
            print(f"{m['model'][-40:]:<40}{tokens:>12}{gamma:>8}  {cells}")
    return 0
