"""(d) The posterior comparison: SGD solutions on two moons vs the local Bayesian posterior.

Built on ``fractaldiff.train.train_ensemble`` and ``fractaldiff.bayes.cluster_solutions`` /
``compare_posterior`` / ``toy_singular_check``; when they are not importable the section says
"not available" with the reason.
"""

from __future__ import annotations

from typing import Any

from .llc import bayes_status

__all__ = ["run_posterior"]


def run_posterior(pcfg: dict[str, Any], lcfg: dict[str, Any], seed: int, *,
                  threads: int = 1) -> dict[str, Any]:
    ok, reason = bayes_status("cluster_solutions", "compare_posterior")
    if not ok:
        return {"available": False, "reason": reason}
    return {"available": False, "reason": "posterior comparison not wired yet"}
