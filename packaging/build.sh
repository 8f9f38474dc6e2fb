#!/usr/bin/env bash
# Build the one-folder app into dist/lrbench-gui/ (what `make package` runs after installing
# PyInstaller into the venv). PYTHON overrides the interpreter (default: the repo's .venv).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"
cd "$root"
"$python" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller packaging/lrbench-gui.spec
app="dist/lrbench-gui"
# The desktop entry and its icon travel with the folder; README.md says where they go.
cp packaging/lrbench-gui.desktop "$app/lrbench-gui.desktop"
cp resources/icons/lrbench.svg "$app/lrbench-gui.svg"
if "$python" -c 'import sys; sys.exit(0 if sys.platform.startswith("linux") else 1)'; then
    if find "$app" -name 'libtorch*' -o -name 'torch' -type d | grep -q .; then
        echo "build.sh: torch ended up in the bundle; check the spec's excludes" >&2
        exit 1
    fi
fi
echo "built $app ($(du -sh "$app" | cut -f1))"
