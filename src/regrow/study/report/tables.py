"""The report's tables as markdown: the ranking and the pruning runs."""

from __future__ import annotations


def _fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def markdown_table(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])


def headline_table(ranking: list[dict]) -> str:
    rows = [["rank", "start", "cell", "seeds", "new loss", "forgetting", "adaptation", "FLOPs", "saving vs scratch"]]
    for i, r in enumerate(ranking, 1):
        saving = "-" if r["saving"] is None else f"{r['saving']:.2f}x ± {r['saving_sd']:.2f}"
        rows.append([str(i), r["start"], r["cell"], str(r["seeds"]), f"{r['new_loss']:.3f} ± {r['new_loss_sd']:.3f}",
                     _fmt(r["forgetting"], "+.3f"), _fmt(r["adaptation"], "+.3f"), f"{r['flops']:.3g}", saving])
    return markdown_table(rows)


def pruning_table(prune_rows: dict[str, dict]) -> str:
    rows = [["run", "parameters kept (non-zero for sparse methods)", "FLOPs", "max diff masked vs sliced"]]
    for key, row in prune_rows.items():
        if row["status"] == "done":
            res = row["result"]
            check = res["exactness"]
            diff = check.get("max_abs_logit_diff", check.get("max_abs_hidden_diff"))
            rows.append([key, f"{res['target']['parameters']:,} ({res['target']['fraction_kept']:.0%})",
                         f"{res['flops']:.3g}", _fmt(diff, ".1e")])
    table = markdown_table(rows)
    if any(row["status"] == "done" and "sparsity" in row["result"] for row in prune_rows.values()):
        table += ("\n\nSparse runs are compared with structured ones at equal non-zero parameters (the same target "
                  "ratio); their training FLOPs are counted as dense, since no sparse kernel is used: at equal "
                  "tokens a sparse run spends the source's compute.")
    return table
