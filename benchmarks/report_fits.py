"""Speed of a study report's scaling fits: every law fitted in one process (the baseline) vs. in
--jobs processes with one BLAS thread each (what `regrow demo` and `regrow report --jobs` do).
Both must give the same fits. Prints seconds (median of --repeats) and the speed-up.

    python benchmarks/report_fits.py --study regrow-demo/study [--jobs 2] [--bootstrap 20] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def main() -> None:
    from regrow.analysis.laws import FitOptions
    from regrow.study.report.sections import fit_laws
    from regrow.study.scaling import StudyRunSet

    parser = argparse.ArgumentParser()
    parser.add_argument("--study", required=True)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--bootstrap", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    study = StudyRunSet(Path(args.study), None)
    options = FitOptions(bootstrap=args.bootstrap, keep=8)
    seconds, fits = {1: [], args.jobs: []}, {}
    for _ in range(args.repeats):
        for jobs in (1, args.jobs):
            started = time.perf_counter()
            fits[jobs] = fit_laws(study, options, jobs)
            seconds[jobs].append(time.perf_counter() - started)
    same = all(str(fits[1][law]) == str(fits[args.jobs][law]) for law in fits[1])
    one, many = statistics.median(seconds[1]), statistics.median(seconds[args.jobs])
    print(json.dumps({"laws": list(fits[1]), "one_process_s": round(one, 1), f"{args.jobs}_processes_s": round(many, 1),
                      "speedup": round(one / many, 2), "same_fits": same}))


if __name__ == "__main__":
    main()
