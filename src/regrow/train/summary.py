"""Forgetting and adaptation of a phase, from the evaluations at its start and its end.

forgetting(d) = loss_end(d) - loss_start(d) for an old domain d (positive = forgotten);
adaptation(d) = loss_start(d) - loss_end(d) for a new domain d (positive = learned).
"""

from __future__ import annotations


def new_domains_of(mixture: dict[str, float], explicit: list[str] | None) -> list[str]:
    """The phase's new domains: as configured, else the domain(s) with the largest weight."""
    if explicit:
        return sorted(explicit)
    top = max(mixture.values())
    return sorted(d for d, w in mixture.items() if w == top)


def forgetting_adaptation(start: dict[str, dict], end: dict[str, dict], new_domains: list[str]) -> dict:
    per_domain = {}
    for name in sorted(end):
        if name not in start:
            continue
        change = end[name]["loss"] - start[name]["loss"]
        role = "new" if name in new_domains else "old"
        per_domain[name] = {
            "role": role,
            "loss_start": start[name]["loss"],
            "loss_end": end[name]["loss"],
            "forgetting" if role == "old" else "adaptation": change if role == "old" else -change,
        }
    old = [v["forgetting"] for v in per_domain.values() if v["role"] == "old"]
    new = [v["adaptation"] for v in per_domain.values() if v["role"] == "new"]
    return {
        "domains": per_domain,
        "forgetting": sum(old) / len(old) if old else None,
        "adaptation": sum(new) / len(new) if new else None,
    }
