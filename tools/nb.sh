#!/usr/bin/env bash
# Edit notebooks as text: `tools/nb.sh out nbs/03_learner.ipynb` writes drafts/03_learner.py (percent format);
# `tools/nb.sh in drafts/03_learner.py` writes it back to nbs/03_learner.ipynb (keeping the outputs of unchanged
# cells: --update). drafts/ is git-ignored.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
meta='{"jupytext": null, "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}'
case "$1" in
  out) shift; mkdir -p drafts; for f in "$@"; do jupytext --quiet --to py:percent -o "drafts/$(basename "$f" .ipynb).py" "$f"; done ;;
  in)  shift; for f in "$@"; do jupytext --quiet --update --to ipynb --update-metadata "$meta" -o "nbs/$(basename "$f" .py).ipynb" "$f"; done; nbdev-clean ;;
  *) echo "usage: tools/nb.sh out NOTEBOOK... | in DRAFT.py..."; exit 2 ;;
esac
