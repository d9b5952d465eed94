"""A pipeline step in plain Python: ask the advisor how many neurons the backbone needs, and hand the
decision to the next step as a JSON file (plus the plot for the run's record).

    pip install ./client
    ADVISOR_URL=http://advisor:8000 ADVISOR_API_KEY=... python examples/pipeline_step.py [job.json] [decision.json]

With no job file it runs the bundled demo job (EfficientNet-Lite0 with ImageNet weights × digits).
Exit status: 0 with a decision, 1 when the job failed or was cancelled, 3 when it timed out.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from advisor_client import Advisor, JobNotSucceeded, WaitTimeout

JOB = {
    "model": {"name": "tf_efficientnet_lite0", "weights": "bundled"},
    "dataset": {"spec": "digits"},
    "deltas": [0.01],
    "delta_mode": "absolute",
}


def main(argv: list[str]) -> int:
    job_body = json.loads(Path(argv[1]).read_text()) if len(argv) > 1 else JOB
    out = Path(argv[2] if len(argv) > 2 else "decision.json")
    with Advisor() as advisor:  # $ADVISOR_URL and $ADVISOR_API_KEY
        job = advisor.submit(**job_body)
        try:
            job.wait(timeout=3600, progress=True)
        except JobNotSucceeded as exc:
            print(f"pipeline_step: {exc}", file=sys.stderr)
            return 1
        except WaitTimeout as exc:
            job.cancel()
            print(f"pipeline_step: {exc}; cancelled", file=sys.stderr)
            return 3
        rec = job.recommendation()  # at the job's first δ, its mode and criterion
        decision = {
            "job_id": job.id,
            "keep_neurons": rec.k,
            "of_neurons": rec.d,
            "fraction": rec.fraction,
            "accuracy": rec.accuracy,
            "full_accuracy": rec.full_accuracy,
            "gini_change": rec.fairness.gini_change,
            "holds_worst_seed": rec.holds_worst_seed,
        }
        out.write_text(json.dumps(decision, indent=2) + "\n")
        job.plot(out.with_suffix(".png"))
    print(f"keep {rec.k} of {rec.d} neurons (fraction {rec.fraction:g}, δ = {rec.delta:g} {rec.mode}); "
          f"Gini {rec.fairness.gini_change:+.4f} → {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
