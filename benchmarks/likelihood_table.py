"""A markdown table of runs scored by ``pyro-vae evaluate --k K``: likelihood, kind of
number, test ELBO and log p(x) in nats per example and in bits/dim, with standard errors,
the training and scoring times.
Rows whose numbers cannot be ranked against the first row's are marked so.

    python benchmarks/likelihood_table.py RUN_DIR ... [--loglik loglik.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pyro_vae.inference.kinds import comparable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--loglik", default="loglik.json", help="the evaluation file in each run directory")
    args = parser.parse_args()
    rows, first_kind = [], None
    for run in args.runs:
        summary = json.loads((run / "summary.json").read_text())
        loglik = json.loads((run / args.loglik).read_text())
        first_kind = first_kind or loglik["kind"]
        verdict = comparable(first_kind, loglik["kind"])
        note = "" if verdict.ok else f" (not ranked: {verdict.reason})"
        rows.append(f"| `{loglik['likelihood']}` | {loglik['kind']}{note} | {summary['best_epoch']} of {summary['epochs']} | "
                    f"{summary['test_elbo']:.1f} | {loglik['log_likelihood_mean']:.1f} ± {loglik['log_likelihood_stderr']:.1f} | "
                    f"**{loglik['bits_per_dim']:.3f} ± {loglik['bits_per_dim_stderr']:.3f}** | "
                    f"{loglik['ess_mean']:.1f} | {sum(summary['seconds_per_epoch']) / 60:.1f} | {loglik['seconds']:.0f} |")
    print("| likelihood | kind of number | best epoch (of) | test ELBO (nats, as trained) | log p(x) (nats) "
          "| bits/dim | ESS mean | training (min) | scoring (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
