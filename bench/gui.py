"""GUI figures: the live view under many streaming trials, and the app's cold start.

1. Streaming. N synthetic trials each print protocol lines (``lrbench_gui.core.protocol.encode``:
   hello, a step every 1/rate s, an eval every 100 steps, end) for S seconds. They run through
   the real path: :class:`~lrbench_gui.qt.trial_runner.TrialRunner` (one ``QProcess`` per trial,
   ``submit(config, program=...)``), its line parser and recorder, and a shown
   :class:`~lrbench_gui.qt.live_plot.LivePlot` fed the way the Run panel feeds it (``add_trial``
   when a trial starts, ``append`` per step event). Measured on the GUI thread:

   - event-loop lag: a 10 ms precise ``QTimer``; lag = actual interval - 10 ms; p50/p99/max;
   - delivery latency: a step's ``wall`` stamp (set when the emitter printed it) to its arrival
     in the live view's slot; p50/p99;
   - received against sent events for every trial (no drops), and every trial ``completed``;
   - RSS (``VmRSS`` of ``/proc/self/status``) once a second: growth over the run and per event;
   - the GUI process's CPU time per 1,000 events;
   - the live plot's own costs: ``LivePlot.redraw`` (one timer tick: one plot's curves brought up
     to date) and each pyqtgraph view's ``paintEvent``, timed by wrappers installed in this
     process only, and the redraw period the plot paced itself to.

   Baselines in the same run: the event loop idle (2 s), and ``reader``, run first: the same
   trials and rate through the same runner and parser with no plot, for a shorter time; the
   figures' ratios are live / reader.
2. Cold start. ``python -m lrbench_gui.qt.app --screenshot PNG`` (QT_QPA_PLATFORM=offscreen, a
   fresh data folder) run K times: the time to the window shown (a probe that wraps
   ``MainWindow.show`` and runs the same module) and to the process's exit (which includes the
   app's fixed 300 ms wait before it grabs the screenshot). Baseline: a bare PySide6
   ``QMainWindow`` shown and closed the same way. ``python -X importtime`` of the app checks
   that torch (and transformers, deepspeed, ray, optuna, sklearn) are not imported at start-up.

Targets (issue 6): lag p99 < 50 ms, no drops, bounded memory, cold start to a shown window < 2 s
and no torch. Exit status 1 when events were dropped, a trial did not complete or torch was
imported; the timing targets are reported in ``targets`` (they depend on the machine's load).

Usage: python bench/gui.py [--quick] [--trials N] [--seconds S] [--rate R]
(full: 16 trials x 60 s at 100 steps/s; --quick: 8 x 20 s). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "deepspeed", "ray", "optuna", "sklearn")
EVAL_EVERY = 100

# The synthetic trainer: argv = trial id, steps per second, seconds. Steps are paced on an
# absolute schedule (a late step is sent at once, never skipped), each line flushed alone.
EMITTER = r"""
import math, os, sys, time
from lrbench_gui.core.runs.protocol import encode

trial, rate, seconds, eval_every = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
steps = int(rate * seconds)
out = sys.stdout
sent = 0

def emit(line):
    global sent
    out.write(line + "\n")
    out.flush()
    sent += 1

emit(encode("hello", trial, pid=os.getpid(), device="cpu", world_size=1, backend="synthetic",
            params=0, trainable_params=0, steps=steps, task="synthetic",
            model={"family": "synthetic", "params": 0}, torch=None))
t0 = time.perf_counter()
best = math.inf
seed = sum(map(ord, trial))
for step in range(steps):
    delay = t0 + step / rate - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    lr = 1e-3 * 0.5 * (1 + math.cos(math.pi * step / steps))
    loss = 2.0 * math.exp(-3.0 * step / steps) + 0.05 * math.sin(step * 0.7 + seed) + 0.1
    best = min(best, loss)
    emit(encode("step", trial, step=step, lr=lr, loss=loss, tokens=(step + 1) * 512,
                samples=(step + 1) * 32, time=time.perf_counter() - t0, wall=time.time()))
    if eval_every and (step + 1) % eval_every == 0:
        emit(encode("eval", trial, step=step, metrics={"val_loss": loss}))
emit(encode("end", trial, status="completed", metrics={"final_loss": loss, "best_loss": best},
            metric="final_loss", metric_mode="min",
            cost={"steps": steps, "tokens": steps * 512, "samples": steps * 32,
                  "seconds": time.perf_counter() - t0}, sent=sent + 1))
"""

# Runs ``python -m lrbench_gui.qt.app ARGS`` with MainWindow.show wrapped to print when the
# window has been shown and the events queued by showing it (the first paint) are handled.
SHOWN_PROBE = r"""
import runpy, sys, time
from PySide6.QtCore import QTimer
import lrbench_gui.qt.main_window as mw
_show = mw.MainWindow.show
def show(self):
    _show(self)
    QTimer.singleShot(0, lambda: print(f"SHOWN {time.time():.6f}", file=sys.stderr, flush=True))
mw.MainWindow.show = show
sys.argv[0] = "lrbench-gui"
runpy.run_module("lrbench_gui.qt.app", run_name="__main__", alter_sys=True)
"""

BARE_QT_PROBE = r"""
import sys, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow
app = QApplication(sys.argv[:1])
w = QMainWindow()
w.setCentralWidget(QLabel("bare"))
w.resize(1360, 860)
w.show()
QTimer.singleShot(0, lambda: print(f"SHOWN {time.time():.6f}", file=sys.stderr, flush=True))
QTimer.singleShot(300, lambda: (w.grab().save(sys.argv[1]), app.quit()))
app.exec()
"""


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


def ms(x: float) -> float:
    return round(x * 1000, 2)


def load() -> dict:
    one, five, fifteen = os.getloadavg()
    return {"load1": round(one, 2), "load5": round(five, 2), "cpus": os.cpu_count()}


def child_env(data_dir: Path) -> dict:
    env = dict(os.environ)
    env.update(QT_QPA_PLATFORM="offscreen", LRBENCH_DATA_DIR=str(data_dir), LRBENCH_PLUGINS_DIR=str(data_dir / "plugins"))
    env.pop("LRBENCH_DB", None)
    return env


def cold_start(runs: int, tmp: Path) -> dict:
    """Time to a shown window and to exit, for the app and for a bare Qt window."""
    env = child_env(tmp / "cold")
    png = tmp / "cold.png"

    def timed(args: list[str]) -> tuple[float, float | None]:
        t0 = time.time()
        proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=60, cwd=tmp)
        t_exit = time.time() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{args[:2]} exited {proc.returncode}: {proc.stderr[-800:]}")
        shown = [float(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("SHOWN ")]
        return t_exit, (shown[0] - t0 if shown else None)

    app_exit, app_shown, bare_shown, bare_exit = [], [], [], []
    timed(["-m", "lrbench_gui.qt.app", "--screenshot", str(png)])  # warms the page cache once
    for _ in range(runs):
        app_exit.append(timed(["-m", "lrbench_gui.qt.app", "--screenshot", str(png)])[0])
        e, s = timed(["-c", SHOWN_PROBE, "--screenshot", str(png)])
        app_shown.append(s)
        e, s = timed(["-c", BARE_QT_PROBE, str(png)])
        bare_exit.append(e)
        bare_shown.append(s)

    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "lrbench_gui.qt.app", "--screenshot", str(png)],
                          env=env, capture_output=True, text=True, timeout=60, cwd=tmp)
    modules, top = set(), {}
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = line[len("import time:"):].split("|")
            modules.add(name.strip())
            if not name.startswith("  "):  # top-level imports (not indented)
                top[name.strip()] = int(cumulative) / 1e6
    roots = {m.split(".")[0] for m in modules}
    heavy = sorted(r for r in roots if r in HEAVY)
    med_shown = statistics.median(app_shown)
    return {
        "runs": runs,
        "shown_s_median": round(med_shown, 3),
        "shown_s_max": round(max(app_shown), 3),
        "exit_s_median": round(statistics.median(app_exit), 3),
        "bare_qt_shown_s_median": round(statistics.median(bare_shown), 3),
        "bare_qt_exit_s_median": round(statistics.median(bare_exit), 3),
        "shown_ratio_to_bare_qt": round(med_shown / statistics.median(bare_shown), 2),
        "modules_imported": len(modules),
        "slowest_top_level_imports_s": {k: round(v, 3) for k, v in sorted(top.items(), key=lambda kv: -kv[1])[:5]},
        "heavy_modules_imported": heavy,
        "torch_imported": "torch" in roots,
    }


class Phase:
    """One streaming run: N synthetic trials through a TrialRunner, optionally into a LivePlot."""

    def __init__(self, name: str, trials: int, seconds: float, rate: float, workdir: Path, plot) -> None:
        self.name, self.n, self.seconds, self.rate = name, trials, seconds, rate
        self.workdir, self.plot = workdir, plot
        self.steps = int(rate * seconds)
        self.expected = 1 + self.steps + self.steps // EVAL_EVERY + 1
        self.received: dict[str, dict[str, int]] = {}
        self.logs: dict[str, list[str]] = {}
        self.records: dict[str, dict] = {}
        self.latency: list[float] = []
        self.lags: list[float] = []
        self.rss: list[tuple[float, float]] = []

    def on_started(self, trial_id: str, config) -> None:
        if self.plot is not None:
            self.plot.add_trial(trial_id, f"{config.policy.get('name', 'composition')} on {config.task}")

    def on_event(self, trial_id: str, event) -> None:
        counts = self.received.setdefault(trial_id, {})
        counts[event.type] = counts.get(event.type, 0) + 1
        if event.type == "step":
            if self.plot is not None:
                self.plot.append(trial_id, event["step"], event["lr"], event["loss"])
            wall = event.get("wall")
            if wall is not None:
                self.latency.append(time.time() - wall)

    def on_log(self, trial_id: str, line: str) -> None:
        self.logs.setdefault(trial_id, []).append(line)

    def on_finished(self, trial_id: str, record: dict) -> None:
        self.records[trial_id] = {"status": record.get("status")}  # not the curves: they would count as growth

    def run(self, lag_sink: list) -> dict:
        from PySide6.QtCore import QEventLoop, QTimer

        from lrbench_gui.core.runs.trial import Budget, TrialConfig
        from lrbench_gui.qt.trial_runner import TrialRunner

        runner = TrialRunner(slots=self.n, workdir=self.workdir)
        runner.trialStarted.connect(self.on_started)
        runner.trialEvent.connect(self.on_event)
        runner.trialLog.connect(self.on_log)
        runner.trialFinished.connect(self.on_finished)
        t0 = time.perf_counter()
        sampler = QTimer()
        sampler.setInterval(1000)
        sampler.timeout.connect(lambda: self.rss.append((time.perf_counter() - t0, rss_mb())))
        lag_sink.append(self.lags)
        rss0, cpu0, children0 = rss_mb(), cpu_s(), resource.getrusage(resource.RUSAGE_CHILDREN)
        self.rss.append((0.0, rss0))
        sampler.start()
        for i in range(self.n):
            cfg = TrialConfig(trial_id=f"{self.name}-{i:02d}", task="synthetic", policy={"name": "cosine", "params": {"lr": 1e-3}},
                              budget=Budget(steps=self.steps))
            runner.submit(cfg, program=[sys.executable, "-c", EMITTER, cfg.trial_id, str(self.rate), str(self.seconds),
                                        str(EVAL_EVERY)])
        loop = QEventLoop()
        runner.idle.connect(loop.quit)
        guard = QTimer()
        guard.setSingleShot(True)
        guard.timeout.connect(loop.quit)
        guard.start(int((self.seconds + 60) * 1000))
        if runner.is_busy():
            loop.exec()
        timed_out = runner.is_busy()
        if timed_out:
            runner.cancel_all(grace=1.0)
        wall = time.perf_counter() - t0
        sampler.stop()
        self.rss.append((wall, rss_mb()))
        cpu = cpu_s() - cpu0
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        children_cpu = ch.ru_utime + ch.ru_stime - children0.ru_utime - children0.ru_stime
        lag_sink[:] = [sink for sink in lag_sink if sink is not self.lags]
        runner.deleteLater()
        return self.figures(wall, cpu, children_cpu, timed_out)

    def figures(self, wall: float, cpu: float, children_cpu: float, timed_out: bool) -> dict:
        sent = self.expected * self.n
        received = sum(sum(c.values()) for c in self.received.values())
        bad = {}
        for i in range(self.n):
            tid = f"{self.name}-{i:02d}"
            c = self.received.get(tid, {})
            want = {"hello": 1, "step": self.steps, "eval": self.steps // EVAL_EVERY, "end": 1}
            got = {k: c.get(k, 0) for k in want}
            status = self.records.get(tid, {}).get("status")
            if got != want or status != "completed":
                bad[tid] = {"got": got, "status": status, "log": self.logs.get(tid, [])[-3:]}
        rss = self.rss
        # growth after the first 5 s (start-up of the trials and first allocations), and its rate
        # in each half of the streaming (a leak or a quadratic copy would make the second steeper)
        warm = next((r for t, r in rss if t >= 5), rss[0][1])
        streaming = [(t, r) for t, r in rss[:-1] if 5 <= t]
        half = len(streaming) // 2

        def slope(points: list[tuple[float, float]]) -> float:
            if len(points) < 2 or points[-1][0] <= points[0][0]:
                return math.nan
            return round((points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0]) * 60, 1)

        peak = max(r for _, r in rss)
        events_after_warm = received * max(0.0, (wall - 5) / wall) if wall > 5 else received
        points = sum(self.plot.points(t) for t in list(self.plot.series)) if self.plot is not None else None
        return {
            "trials": self.n,
            "seconds": self.seconds,
            "rate_steps_per_s": self.rate,
            "wall_s": round(wall, 2),
            "timed_out": timed_out,
            "events_sent": sent,
            "events_received": received,
            "events_per_s": round(received / wall, 1),
            "dropped": sent - received,
            "bad_trials": bad,
            "plot_points": points,
            "lag_ms": {"p50": ms(pct(self.lags, 50)), "p99": ms(pct(self.lags, 99)), "max": ms(max(self.lags, default=math.nan)),
                       "samples": len(self.lags)},
            "latency_ms": {"p50": ms(pct(self.latency, 50)), "p99": ms(pct(self.latency, 99)),
                           "max": ms(max(self.latency, default=math.nan))},
            "rss_mb": {"start": round(rss[0][1], 1), "after_5s": round(warm, 1), "end": round(rss[-1][1], 1),
                       "peak": round(peak, 1), "growth_after_5s": round(rss[-1][1] - warm, 1),
                       "bytes_per_event_after_5s": round((rss[-1][1] - warm) * 2**20 / max(1.0, events_after_warm), 1),
                       "mb_per_min_first_half": slope(streaming[: half + 1]),
                       "mb_per_min_second_half": slope(streaming[half:]),
                       "samples": [round(r, 1) for _, r in rss[:: max(1, len(rss) // 12)]]},
            "gui_cpu_s": round(cpu, 2),
            "gui_cpu_ms_per_1k_events": round(cpu * 1e6 / max(1, received), 2),
            "gui_cpu_share": round(cpu / wall, 3),
            "emitters_cpu_s": round(children_cpu, 2),
        }


def instrument(live_plot_cls, view_cls) -> dict[str, list[float]]:
    """Time LivePlot.redraw (the setData pass) and every pyqtgraph view paint, in this process."""
    costs: dict[str, list[float]] = {"redraw": [], "paint": []}

    def timed(fn, sink):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                sink.append(time.perf_counter() - t0)
        return wrapper

    live_plot_cls.redraw = timed(live_plot_cls.redraw, costs["redraw"])
    view_cls.paintEvent = timed(view_cls.paintEvent, costs["paint"])
    return costs


def streaming(trials: int, seconds: float, rate: float, reader_seconds: float, tmp: Path) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["LRBENCH_DATA_DIR"] = str(tmp / "data")
    from PySide6.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer
    from PySide6.QtWidgets import QVBoxLayout, QWidget

    import pyqtgraph as pg

    from lrbench_gui.qt.app import create_app
    from lrbench_gui.qt.live_plot import LivePlot

    app = create_app()
    plot_cls = LivePlot
    frame_costs = instrument(plot_cls, pg.GraphicsView)
    window = QWidget()
    window.setWindowTitle("lrbench live view (bench)")
    layout = QVBoxLayout(window)
    plot = plot_cls()
    layout.addWidget(plot)
    window.resize(1360, 860)
    window.show()

    sinks: list[list[float]] = []
    clock = QElapsedTimer()
    clock.start()
    last = {"ns": None}

    def tick() -> None:
        now = clock.nsecsElapsed()
        if last["ns"] is not None:
            lag = (now - last["ns"]) / 1e9 - 0.010
            for sink in sinks:
                sink.append(lag)
        last["ns"] = now

    lag_timer = QTimer()
    lag_timer.setTimerType(Qt.TimerType.PreciseTimer)
    lag_timer.setInterval(10)
    lag_timer.timeout.connect(tick)
    lag_timer.start()

    def spin(secs: float) -> None:
        loop = QEventLoop()
        QTimer.singleShot(int(secs * 1000), loop.quit)
        loop.exec()

    spin(0.5)
    idle: list[float] = []
    sinks.append(idle)
    spin(2.0)
    sinks.remove(idle)

    out = {"idle_lag_ms": {"p50": ms(pct(idle, 50)), "p99": ms(pct(idle, 99)), "max": ms(max(idle))}}
    # the baseline first, so that the live run's memory figures start from a heap it did not grow
    reader = Phase("reader", trials, reader_seconds, rate, tmp / "trials", None)
    out["reader"] = reader.run(sinks)
    spin(0.5)
    live = Phase("live", trials, seconds, rate, tmp / "trials", plot)
    for costs in frame_costs.values():
        costs.clear()
    out["live"] = live.run(sinks)
    wall = out["live"]["wall_s"]
    out["live"]["frames"] = {
        "redraws_per_s": round(len(frame_costs["redraw"]) / wall, 1),
        "redraw_ms": {"p50": ms(pct(frame_costs["redraw"], 50)), "p99": ms(pct(frame_costs["redraw"], 99))},
        # one paint of one of the two plots (LR, loss); a frame repaints both
        "plot_paints_per_s": round(len(frame_costs["paint"]) / wall, 1),
        "plot_paint_ms": {"p50": ms(pct(frame_costs["paint"], 50)), "p99": ms(pct(frame_costs["paint"], 99)),
                          "max": ms(max(frame_costs["paint"], default=math.nan))},
        "paint_share_of_wall": round(sum(frame_costs["paint"]) / wall, 3),
        "redraw_period_ms_at_end": plot.timer.interval(),
    }
    out["live"]["load_after"] = load()
    lag_timer.stop()
    window.close()
    app.processEvents()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="8 trials x 20 s (under 2 minutes)")
    ap.add_argument("--trials", type=int)
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--rate", type=float, default=100.0, help="steps per second per trial")
    ap.add_argument("--cold-runs", type=int)
    args = ap.parse_args(argv)
    trials = args.trials or (8 if args.quick else 16)
    seconds = args.seconds or (20.0 if args.quick else 60.0)
    reader_seconds = min(seconds, 10.0 if args.quick else 20.0)
    cold_runs = args.cold_runs or (3 if args.quick else 5)

    figures: dict = {"mode": "quick" if args.quick else "full",
                     "python": sys.version.split()[0], "load_before": load()}
    with tempfile.TemporaryDirectory(prefix="lrbench-bench-gui-") as tmp_name:
        tmp = Path(tmp_name)
        print(f"cold start: {cold_runs} runs each of the app, the probe and a bare Qt window ...", flush=True)
        figures["cold_start"] = cold_start(cold_runs, tmp)
        c = figures["cold_start"]
        print(f"  shown {c['shown_s_median']} s (bare Qt {c['bare_qt_shown_s_median']} s), exit {c['exit_s_median']} s, "
              f"torch imported: {c['torch_imported']}", flush=True)
        print(f"streaming: {trials} trials at {args.rate:g} steps/s, {reader_seconds:g} s with no plot, "
              f"then {seconds:g} s into the live plot ...", flush=True)
        figures.update(streaming(trials, seconds, args.rate, reader_seconds, tmp))

    live, reader = figures["live"], figures["reader"]
    for name, f in (("reader", reader), ("live", live)):
        print(f"  {name}: {f['events_received']}/{f['events_sent']} events in {f['wall_s']} s; lag p50/p99/max "
              f"{f['lag_ms']['p50']}/{f['lag_ms']['p99']}/{f['lag_ms']['max']} ms; latency p99 {f['latency_ms']['p99']} ms; "
              f"RSS {f['rss_mb']['start']} -> {f['rss_mb']['end']} MB; GUI CPU {f['gui_cpu_ms_per_1k_events']} ms/1k events",
              flush=True)
    figures["ratios_live_to_reader"] = {
        "lag_p99": round(live["lag_ms"]["p99"] / max(0.01, reader["lag_ms"]["p99"]), 2),
        "lag_p50": round(live["lag_ms"]["p50"] / max(0.01, reader["lag_ms"]["p50"]), 2),
        "gui_cpu_per_event": round(live["gui_cpu_ms_per_1k_events"] / max(0.001, reader["gui_cpu_ms_per_1k_events"]), 2),
        "latency_p99": round(live["latency_ms"]["p99"] / max(0.01, reader["latency_ms"]["p99"]), 2),
        "rss_bytes_per_event": round(live["rss_mb"]["bytes_per_event_after_5s"]
                                     / max(1.0, reader["rss_mb"]["bytes_per_event_after_5s"]), 2),
    }
    figures["load_after"] = load()
    ok_events = live["dropped"] == 0 and reader["dropped"] == 0 and not live["bad_trials"] and not reader["bad_trials"]
    figures["targets"] = {
        "lag_p99_under_50ms": live["lag_ms"]["p99"] < 50,
        "no_dropped_events": ok_events,
        # The live view keeps every point (plot buffers, pyqtgraph's copies, the recorder's lists):
        # growth is linear in the points held. Bounded means under 2 kB an event and no steeper
        # in the second half of the run than in the first (no leak, no quadratic copying).
        "memory_bounded": live["rss_mb"]["bytes_per_event_after_5s"] < 2048
        and not live["rss_mb"]["mb_per_min_second_half"] > 1.5 * max(1.0, live["rss_mb"]["mb_per_min_first_half"]),
        "cold_start_shown_under_2s": figures["cold_start"]["shown_s_median"] < 2.0,
        "torch_not_imported": not figures["cold_start"]["torch_imported"],
    }
    print(json.dumps(figures))
    return 0 if ok_events and not figures["cold_start"]["heavy_modules_imported"] else 1


if __name__ == "__main__":
    sys.exit(main())
