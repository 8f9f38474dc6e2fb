#!/usr/bin/env bash
# Start the built app under Xvfb and check what it shows.
#
#   packaging/smoke_test.sh [APP]          (APP: dist/lrbench-gui/lrbench-gui by default)
#
# 1. Each panel (Policies, Run, ..., Plugins) is rendered with --screenshot on a real X
#    server (xvfb-run, QT_QPA_PLATFORM=xcb) and the PNG is checked: the right size, not blank.
# 2. The built-in plugins were found through their entry points (LRBENCH_TRACE_PLUGINS).
# 3. The Results panel opens a database seeded with synthetic trials (when a source Python is
#    at hand: LRBENCH_PYTHON, else the repo's .venv).
# 4. A trial command (`APP -m lrbench_gui.trainer FILE`) fails plainly without LRBENCH_PYTHON
#    and, with it, runs a 20-step digits-mlp trial in that Python to its `end` event.
# Screenshots stay in $SMOKE_OUT (default: a temporary folder, printed at the end); SMOKE_PANELS
# names the panels to render (default: all of them).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
app="$(realpath "${1:-$root/dist/lrbench-gui/lrbench-gui}")"
size=1360x860
out="${SMOKE_OUT:-$(mktemp -d /tmp/lrbench-smoke.XXXXXX)}"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
src_python="${LRBENCH_PYTHON:-$root/.venv/bin/python}"
[ -x "$src_python" ] || src_python=""
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

[ -x "$app" ] || { echo "no app at $app (build it: make package)" >&2; exit 2; }
command -v xvfb-run >/dev/null || { echo "xvfb-run is missing (apt-get install xvfb)" >&2; exit 2; }

# A fresh data folder: no user plugins, no saved settings, our own database.
export LRBENCH_DATA_DIR="$work/data" LRBENCH_PLUGINS_DIR="$work/plugins" XDG_CONFIG_HOME="$work/config"
unset LRBENCH_DB LRBENCH_RESOURCES LRBENCH_LOAD_PLUGINS
mkdir -p "$LRBENCH_DATA_DIR"

if [ -n "$src_python" ]; then
    "$src_python" - "$LRBENCH_DATA_DIR/policies.json" <<'PY' || fail "could not seed the database"
import sys
from lrbench_gui.core.db import PolicyDB
from lrbench_gui.core.db.sample import synthetic_study, synthetic_trial
with PolicyDB(sys.argv[1]) as db:
    db.add_study(synthetic_study())
    db.add_many("trials", [synthetic_trial(i, points=200) for i in range(9)])
PY
fi

# Every panel the app has: it lists them when asked for one it does not have.
panels="${SMOKE_PANELS:-$(QT_QPA_PLATFORM=offscreen "$app" --panel '?' --screenshot "$work/none.png" 2>&1 |
    sed -n 's/.*(panels: \(.*\))$/\1/p' | tr -d ',')}"
[ -n "$panels" ] || { fail "could not list the panels"; panels="Policies"; }
echo "panels: $panels"
for panel in $panels; do
    shot="$out/$panel.png"
    start=$(date +%s%N)
    LRBENCH_TRACE_PLUGINS=1 QT_QPA_PLATFORM=xcb timeout 60 \
        xvfb-run -a -s "-screen 0 1600x1000x24" "$app" --screenshot "$shot" --panel "$panel" --size "$size" \
        >"$out/$panel.log" 2>&1
    rc=$?
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    if [ $rc -ne 0 ]; then
        fail "$panel: exit status $rc"; tail -20 "$out/$panel.log" >&2; continue
    fi
    python3 "$root/packaging/check_png.py" "$shot" "$size" || fail "$panel: bad screenshot"
    echo "  $panel: ${ms} ms to the screenshot and exit, Xvfb start-up included"
done

log="$out/Policies.log"
builtins=$(grep -c "^\[lrbench plugins\] builtin-.* registered" "$log")
[ "$builtins" -ge 8 ] || fail "only $builtins built-in plugin hooks registered anything (see $log)"
grep -q "failed to import\|Traceback" "$log" && fail "a plugin failed to load (see $log)"
echo "built-in plugin hooks that registered: $builtins"

# Trials: the frozen app has no torch; it hands trial commands to LRBENCH_PYTHON.
msg=$(env -u LRBENCH_PYTHON "$app" -m lrbench_gui.trainer "$work/none.json" 2>&1)
rc=$?
if [ $rc -eq 2 ] && grep -q LRBENCH_PYTHON <<<"$msg"; then
    echo "trial without LRBENCH_PYTHON: refused plainly"
else
    fail "trial without LRBENCH_PYTHON: status $rc, output: $msg"
fi
if [ -n "$src_python" ]; then
    "$src_python" - "$work/trial.json" <<'PY'
import sys
from pathlib import Path
from lrbench_gui.core.runs.trial import Budget, TrialConfig, write_trial
write_trial(TrialConfig(task="digits-mlp", policy={"name": "cosine", "params": {"lr": 0.01}},
                        budget=Budget(steps=20), device="cpu"), Path(sys.argv[1]))
PY
    (cd "$work" && LRBENCH_PYTHON="$src_python" timeout 120 "$app" -m lrbench_gui.trainer trial.json \
        >"$out/trial.out" 2>"$out/trial.err")
    rc=$?
    if [ $rc -eq 0 ] && grep -q '"type": "end".*"status": "completed"' "$out/trial.out"; then
        echo "trial through LRBENCH_PYTHON: completed, $(grep -c '"type": "step"' "$out/trial.out") step events"
    else
        fail "trial through LRBENCH_PYTHON: status $rc"; tail -5 "$out/trial.err" >&2
    fi
fi

echo "screenshots and logs: $out"
if [ $failures -ne 0 ]; then
    echo "smoke test: $failures failure(s)" >&2
    exit 1
fi
echo "smoke test: ok"
