#!/usr/bin/env bash
# One command sets everything up: a virtual environment with balance_nb (editable), its dependencies with the
# torch trio pinned by constraints.txt, the developer tools, and Debian's Chromium for the browser tests.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev]"
# Debian packages: chromium (browser tests), ffmpeg (video decoding for `python -m balance_nb prepare`)
PKGS=""
command -v chromium >/dev/null 2>&1 || PKGS="$PKGS chromium"
command -v ffmpeg >/dev/null 2>&1 || PKGS="$PKGS ffmpeg"
if [ -n "$PKGS" ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $PKGS >/dev/null \
    || echo "warning: could not install$PKGS; the browser tests / ffmpeg tests will be skipped"
fi
.venv/bin/python -c "import torch, torchaudio, torchvision, balance_nb; print('balance_nb', balance_nb.__version__, '| torch', torch.__version__, '| torchaudio', torchaudio.__version__)"
