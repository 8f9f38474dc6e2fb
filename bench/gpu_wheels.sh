#!/usr/bin/env bash
# The wheels bench/gpu.py installs on a bare GPU machine that has no network: DeepSpeed and what
# lrbench and DeepSpeed need beyond torch, transformers, peft and accelerate, at the versions this
# virtual environment runs (so they fit together). Pure-Python ones once; binary ones for each
# CPython of PYVERS (manylinux x86_64), since the GPU image's python may differ from this one.
#
# Usage: bash bench/gpu_wheels.sh   (PYTHON=... and PYVERS="3.11 3.12" override; needs pip's
# registry; bench/wheels/ is ignored by git and stays a few tens of MB at most)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PYVERS=${PYVERS:-"3.10 3.11 3.12 3.13"}
OUT=bench/wheels
PURE="deepspeed hjson pydantic annotated-types typing-inspection typing-extensions tinydb platformdirs pluggy
      py-cpuinfo einops packaging tqdm"
BINARY="pydantic-core msgpack psutil ninja safetensors"
PLATFORMS="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"

version() { "$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1" 2>/dev/null; }
pip() { "$PY" -m pip -q --disable-pip-version-check "$@"; }

rm -rf "$OUT"
mkdir -p "$OUT"
missing=()
for name in $PURE; do
  v=$(version "$name") || { missing+=("$name (not installed here)"); continue; }
  # a published wheel if there is one; else build it from the sdist against this venv's torch
  # (DeepSpeed publishes an sdist only; its wheel is pure Python, its ops compile on first use)
  pip download --no-deps --only-binary=:all: -d "$OUT" "$name==$v" 2>/dev/null \
    || pip wheel --no-deps --no-build-isolation -w "$OUT" "$name==$v" \
    || missing+=("$name==$v")
done
for name in $BINARY; do
  v=$(version "$name") || { missing+=("$name (not installed here)"); continue; }
  for py in $PYVERS; do
    # shellcheck disable=SC2086
    pip download --no-deps --only-binary=:all: --implementation cp --python-version "$py" $PLATFORMS \
      -d "$OUT" "$name==$v" 2>/dev/null || missing+=("$name==$v for CPython $py")
  done
done
ls -1 "$OUT"
echo "bench/wheels: $(ls "$OUT" | wc -l) wheels, $(du -sh "$OUT" | cut -f1)"
if [ ${#missing[@]} -gt 0 ]; then
  printf 'not fetched: %s\n' "${missing[@]}" >&2
fi
