#!/usr/bin/env bash
# A CI step: run the analysis on the advisor, fail the build unless the layer can be cut to
# MAX_FRACTION of its neurons within δ, and print the answer for the log.
#
#   ADVISOR_URL=http://advisor:8000 ADVISOR_API_KEY=... MAX_FRACTION=0.5 examples/ci_step.sh [advisor submit options]
#
# Options given as arguments are appended to the `advisor submit` below (the last value wins), e.g.
# `--model resnet50 --weights hub --dataset npz:/data/ours.npz`. The step fails with advisor's exit
# code when the job fails or is cancelled (1), the input is bad (2), it times out (3) or the server is
# unreachable (4); with 5 when the answer is above MAX_FRACTION.
set -euo pipefail

answer=$(advisor submit --model tf_efficientnet_lite0 --weights bundled --dataset digits \
    --delta 0.01 --delta-mode absolute "$@" --wait --timeout "${TIMEOUT:-3600}" --json)

jq -r '.recommendations[0] | "keep \(.k) of \(.d) neurons: fraction \(.fraction), accuracy \(.accuracy) vs \(.full_accuracy), Gini change \(.fairness.gini_change)"' <<<"$answer"
if ! jq -e --argjson max "${MAX_FRACTION:-1}" '.recommendations[0].fraction <= $max' <<<"$answer" >/dev/null; then
    echo "ci_step: the layer needs more than ${MAX_FRACTION:-1} of its neurons" >&2
    exit 5
fi
