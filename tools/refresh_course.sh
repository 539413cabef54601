#!/usr/bin/env bash
# Re-execute the whole course in real Jupyter kernels (every cell, each notebook in a fresh kernel, from an empty
# course store: a student's first pass), keep every notebook's outputs (the pictures a reader sees on opening it),
# record the timing in benchmarks/course_timing.md, and redraw the README's figure from the course runs.
# Run it alone on a quiet machine; then review `git diff --stat nbs/` and commit.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
python benchmarks/course_timing.py --fresh-store --inplace
python benchmarks/readme_figure.py
nbdev-clean
