"""`regrow fit --law LAW (--study STUDY_DIR | --csv FILE | --runs RUN_DIR...) [--json] [--plot FILE]`.

Fits a scaling law (docs/ALGORITHMS.md §7; docs/SCALING.md): parameters with bootstrap intervals,
goodness of fit, the law's own results (compute-optimal N/D, effective data transferred, a
schedule's predicted curve with `--predict`), and a figure of the data against the fits.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from regrow.analysis.laws import LAWS, FitOptions, build_law
from regrow.analysis.plots import law_figure
from regrow.analysis.table import read_csv
from regrow.cli.argtypes import finite_float
from regrow.cli.commands import COMMANDS
from regrow.cli.outputs import check_output_args, emit
from regrow.errors import RegrowError
from regrow.study import scaling


@COMMANDS.register("fit")
def register(subparsers) -> None:
    parser = subparsers.add_parser("fit", help="fit a scaling law to a study, run folders or a CSV file")
    parser.add_argument("--law", required=True, choices=list(LAWS), help=f"{LAWS.summaries()}")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--study", metavar="STUDY_DIR")
    source.add_argument("--csv", metavar="FILE")
    source.add_argument("--runs", nargs="+", metavar="RUN_DIR", help="finished `regrow train` run folders")
    parser.add_argument("--domain", nargs="+", default=None,
                        help="domains whose mean validation loss is fitted (runs/study; default: the new domains)")
    parser.add_argument("--predict", default=None, metavar="RECIPE",
                        help="annealing: predict the curve of this recipe's schedule (a recipe YAML or a finished run folder)")
    parser.add_argument("--min-step", type=int, default=1,
                        help="annealing / cpt: fit only points from this step on (pre-training phase for cpt)")
    parser.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamples for the intervals (0: none)")
    parser.add_argument("--level", type=finite_float, default=0.95, help="confidence level of the intervals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--plot", default=None, metavar="FILE.png", help="draw the data against the fitted curves")
    parser.add_argument("--out", default=None, metavar="FILE.json", help="write the results as JSON")
    parser.set_defaults(func=run)


def load_table(args):
    if args.csv:
        return read_csv(args.csv, optional_blank=LAWS[args.law].blank)
    if args.study:
        return scaling.study_table(args.law, args.study, args.domain)
    return scaling.runs_table(args.law, args.runs, args.domain)


def prediction_for(args, fits) -> dict | None:
    if args.predict is None:
        return None
    law = LAWS[args.law]()
    if not law.predicts_schedules:
        which = ", ".join(LAWS.where(lambda cls: cls.predicts_schedules))
        raise RegrowError(f"--predict is for the {which} law; got --law {args.law}")
    target = Path(args.predict)
    if target.is_dir():
        lrs = scaling.run_learning_rates(target)
        actual = scaling.eval_points(target, args.domain or scaling.new_domains_of_run(target))[2][-1]
    else:
        lrs, actual = scaling.recipe_learning_rates(target), None
    result = law.prediction(fits[0], lrs)
    result["target"] = str(target)
    if actual is not None:
        result["actual_final_loss"] = float(actual)
        result["error"] = result["final_loss"] - float(actual)
        result["power_law_error"] = result["power_law_final_loss"] - float(actual)
    return result


def run(args) -> int:
    check_output_args(args, "law", "fits")
    options = FitOptions(bootstrap=args.bootstrap, seed=args.seed, level=args.level, min_step=args.min_step)
    options.validate()
    law = build_law(args.law)
    fits = law.fit_table(load_table(args), options)
    prediction = prediction_for(args, fits)
    result = {"law": args.law, "fits": [dataclasses.asdict(f) for f in fits]}
    if prediction is not None:
        result["prediction"] = prediction
    extra = [] if prediction is None else [(f"predicted: {Path(args.predict).name}",
                                            list(range(1, prediction["steps"] + 1)), prediction["curve"])]
    for warning in (prediction or {}).get("warnings", []) + [w for f in fits for w in f.warnings]:
        print(f"regrow: warning: {warning}", file=sys.stderr)
    if emit(args, result, lambda _: law_figure(fits, extra)):
        return 0
    for fit in fits:
        print_fit(fit, options.level)
    if prediction is not None:
        print_prediction(prediction)
    return 0


def print_fit(fit, level: float) -> None:
    print(f"== {fit.law}{f' [{fit.group}]' if fit.group else ''}: {fit.formula}")
    for name, p in fit.parameters.items():
        ci = f"  [{p['low']:.4g}, {p['high']:.4g}] ({level:.0%})" if "low" in p else ""
        print(f"   {name:<8} {p['value']:.4g}{ci}")
    g = fit.goodness
    print(f"   fit: {g['points']} points, RMSE {g['rmse']:.4g}, RMSE(log) {g['rmse_log']:.4g}, R^2 {g['r2']:.4f}")
    extras = fit.extras
    for opt in extras.get("compute_optimal", []):
        print(f"   compute-optimal at C={opt['compute']:.3g}: N={opt['N_opt']:.3g}, D={opt['D_opt']:.3g} "
              f"({opt['tokens_per_parameter']:.1f} tokens/parameter)")
    if "counts" in extras:
        c = extras["counts"]
        print(f"   points: {c['points']} trained, {c['no_transfer']} without transfer, {c['below_scratch_asymptote']} "
              f"below the scratch curve's asymptote, {c['extrapolated']} priced beyond the control's last token count")
        if extras.get("effective_data_at_start") is not None:
            print(f"   effective data of the warm start itself: {extras['effective_data_at_start']:.3g} tokens")
    if "power_law_in_steps_goodness" in extras:
        print(f"   beside it, a power law in steps: RMSE {extras['power_law_in_steps_goodness']['rmse']:.4g}")
    if "shift_sign" in extras:
        print(f"   {extras['shift_sign']}")


def print_prediction(p: dict) -> None:
    print(f"== prediction for {p['target']} ({p['steps']} steps): final loss {p['final_loss']:.4f} "
          f"(a power law in steps: {p['power_law_final_loss']:.4f})")
    if "actual_final_loss" in p:
        print(f"   actual {p['actual_final_loss']:.4f}: error {p['error']:+.4f} (power law {p['power_law_error']:+.4f})")
