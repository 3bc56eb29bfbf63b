#!/usr/bin/env bash
# `make gpu-wheels`: every wheel the service and its tests need except torch, for a GPU machine
# that has its own CUDA torch and no network (bench/gpu_check.sh installs them there).
# Into .whl/ (git-ignored), for CPython 3.12 and 3.11 on manylinux x86_64, then a rehearsal:
# the set must resolve offline for each Python. Usage: bench/gpu_wheels.sh [python versions]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
VERSIONS=${*:-3.12 3.11}
DEST=.whl
PLATFORMS=(--only-binary=:all: --implementation cp --platform manylinux_2_28_x86_64
           --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
mkdir -p "$DEST"
REQS=$DEST/requirements.txt
# The pins of pyproject.toml less what a GPU machine brings with its torch (torch itself,
# numpy and matplotlib with their own needs: the image has them, and torch's numpy must not
# be shadowed) and what it never runs (ruff; playwright and its browser: hundreds of MB).
"$PY" - "$REQS" <<'PY'
import sys
import tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
skip = {"torch", "numpy", "matplotlib", "ruff", "playwright"}
pins = project["dependencies"] + project["optional-dependencies"]["test"]
kept = [pin for pin in pins if pin.split("==")[0].split("[")[0] not in skip]
open(sys.argv[1], "w").write("\n".join(kept) + "\n")
PY
for version in $VERSIONS; do
    echo "== wheels for CPython $version"
    "$PY" -m pip download -q --disable-pip-version-check --python-version "$version" \
        "${PLATFORMS[@]}" -d "$DEST" -r "$REQS"
done
for version in $VERSIONS; do
    echo "== offline rehearsal for CPython $version"
    "$PY" -m pip --isolated install -q --dry-run --ignore-installed \
        --no-index --find-links "$DEST" --python-version "$version" "${PLATFORMS[@]}" \
        --target "$(mktemp -d)" -r "$REQS"
done
echo "== $(ls "$DEST"/*.whl | wc -l) wheels, $(du -sh "$DEST" | cut -f1) in $DEST"
