"""The equivalent command line of the Run and Study forms: ``lrbench run ...`` for the trial the
Run panel would start, ``lrbench tune ...`` for the study the Study panel would start.

:func:`run_command` and :func:`study_command` write only what differs from the CLI's defaults,
and the CLI parses the line back to the same trial or study (``tests/test_results_actions.py``
checks it through the CLI's own parser); what a form holds that no flag carries (a study's
DeepSpeed config, torch threads) is said in a note under the line rather than dropped in silence.
:class:`CommandLine` is the read-only line with its Copy button; :func:`attach_run` and
:func:`attach_study` put one under a panel's form and keep it current. (The Methods panel's
"New..." form writes its ``lrbench study KIND`` line with :func:`lrbench_gui.core.tuning.kinds.command_line`.)
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QTimer
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core.registry import Registry

__all__ = ["CommandLine", "run_command", "study_command", "attach_run", "attach_study", "set_text"]


def set_text(value: Any) -> str:
    """A ``--set key=VALUE`` value that :func:`lrbench_gui.core.spec.parse_assignment` reads back
    as ``value``: a plain string as it is unless it would read as JSON, anything else as JSON."""
    from lrbench_gui.core.spec import parse_assignment

    if isinstance(value, str):
        try:
            if parse_assignment("k=" + value)[1] == value:
                return value
        except ValueError:
            pass
    return json.dumps(value, separators=(",", ":"))


def _number(value: Any) -> str:
    from lrbench_gui.core.tuning.kinds import format_value

    return format_value(value)


def _sets(prefix: str, values: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for key, value in values.items():
        out += ["--set", f"{prefix}.{key}={set_text(value)}"]
    return out


def _changed(values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in defaults or _plain(defaults[k]) != _plain(v)}


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))  # tuples as lists, so (0.9, 0.999) == [0.9, 0.999]


def _task_defaults(task: str, registry: Registry | None) -> dict[str, Any]:
    entry = registry.tasks.get(task) if registry is not None else None
    try:
        return entry.obj.Params().model_dump(mode="json") if entry is not None else {}
    except Exception:  # noqa: BLE001 - a task whose parameters have no defaults: every value is given
        return {}


def _policy_args(spec: dict[str, Any], registry: Registry | None) -> list[str]:
    """``--policy NAME --set policy.K=V ...`` (only the parameters that differ from the policy's
    defaults), or the spec as inline JSON for a composition."""
    if "sequence" in spec or registry is None:
        return ["--policy", json.dumps(spec, separators=(",", ":"))]
    from lrbench_gui.core.spec import SpecError, parse_spec

    name = str(spec.get("name"))
    try:
        defaults = parse_spec({"name": name, "params": {}}, registry).to_json()["params"]
    except SpecError:
        defaults = {}
    params = spec.get("params") or {}
    return ["--policy", name] + _sets("policy", _changed(params, defaults))


def run_command(cfg: Any, registry: Registry | None = None, db: str | Path | None = None) -> str:
    """The ``lrbench run ...`` line of the trial ``cfg`` (a validated ``TrialConfig``)."""
    from lrbench_gui.core.runs.trial import DeepSpeedOptions, Optimizer, TrialConfig

    d = TrialConfig.model_fields
    args = ["lrbench", "run", "--task", cfg.task]
    args += _policy_args(cfg.policy, registry)
    budget = cfg.budget
    if budget.steps is not None:
        args += ["--steps", str(budget.steps)]
    elif budget.epochs is not None:
        args += ["--epochs", _number(budget.epochs)]
    else:
        args += ["--tokens", str(budget.tokens)]
    opt = cfg.optimizer.model_dump(mode="json")
    opt_default = Optimizer().model_dump(mode="json")
    if opt["name"] != opt_default["name"]:
        args += ["--optimizer", opt["name"]] if opt["name"] in ("adamw", "adam", "sgd") else ["--set", f"optim.name={opt['name']}"]
    args += _sets("optim", _changed({k: v for k, v in opt.items() if k != "name"}, opt_default))
    args += _sets("task", _changed(dict(cfg.task_params), _task_defaults(cfg.task, registry)))
    for field, flag in (("batch_size", "--batch-size"), ("eval_every", "--eval-every"), ("checkpoint_every", "--checkpoint-every"),
                        ("seed", "--seed"), ("threads", "--threads"), ("precision", "--precision"),
                        ("grad_accum", "--grad-accum"), ("device", "--device"), ("output_dir", "--output-dir")):
        value = getattr(cfg, field)
        if value != d[field].get_default(call_default_factory=True):
            args += [flag, _number(value)]
    if cfg.backend == "deepspeed":
        args += ["--trainer", "deepspeed"]
        ds, ds_default = cfg.deepspeed, DeepSpeedOptions()
        if ds.num_gpus != ds_default.num_gpus:
            args += ["--gpus-per-trial", str(ds.num_gpus)]
        if ds.zero_stage != ds_default.zero_stage:
            args += ["--zero-stage", str(ds.zero_stage)]
    if cfg.save_model:
        args.append("--save-model")
    if db:
        args += ["--db", str(db)]
    return shlex.join(args)


def study_command(cfg: Any, registry: Registry | None = None, db: str | Path | None = None) -> tuple[str, str]:
    """The ``lrbench tune ...`` line of the study ``cfg`` (a ``StudyConfig``) and a note naming
    what the line cannot carry ("" when it carries everything). With ``registry``, task and
    tuner parameters equal to their defaults are left out."""
    from lrbench_gui.core.runs.command import join_command
    from lrbench_gui.core.tuning.kinds import format_evaluator
    from lrbench_gui.core.tuning.study import StudyConfig

    d = StudyConfig(task=cfg.task)
    args = ["lrbench", "tune"]
    if cfg.command is not None:
        args += ["--cmd", join_command(cfg.command)]
        if cfg.cwd:
            args += ["--cwd", cfg.cwd]
    if cfg.command is None or cfg.task != "command":
        args += ["--task", cfg.task]
    args += _sets("task", _changed(dict(cfg.task_params), _task_defaults(cfg.task, registry)))
    for field, flag in (("method", "--method"), ("tuner", "--tuner")):
        if getattr(cfg, field) != getattr(d, field):
            args += [flag, str(getattr(cfg, field))]
    tuner = registry.tuners.get(cfg.tuner) if registry is not None else None
    try:
        tuner_defaults = tuner.obj.Params().model_dump(mode="json") if tuner is not None else {}
    except Exception:  # noqa: BLE001 - parameters without defaults: every value is given
        tuner_defaults = {}
    args += _sets("tuner", _changed(dict(cfg.tuner_params), tuner_defaults))
    if list(cfg.policies) != list(d.policies):
        args += ["--policies", ",".join(cfg.policies)]
    for field, flag in (("budget_steps", "--budget-steps"), ("trials", "--trials"), ("parallel", "--parallel"),
                        ("batch_size", "--batch-size"), ("seed", "--seed"), ("eval_every", "--eval-every"),
                        ("checkpoint_every", "--checkpoint-every")):
        if getattr(cfg, field) != getattr(d, field):
            args += [flag, str(getattr(cfg, field))]
    opt = dict(cfg.optimizer)
    name = opt.pop("name", None)
    if name is not None:
        args += ["--optimizer", str(name)] if name in ("adamw", "adam", "sgd") else ["--set", f"optim.name={name}"]
    args += _sets("optim", opt)
    if cfg.backend == "ray":
        args += ["--scheduler", "ray"] + (["--address", cfg.ray_address] if cfg.ray_address else [])
    if cfg.target is not None and cfg.metric:
        args += ["--target", f"{cfg.metric}={_number(cfg.target)}"]
    elif cfg.metric:
        args += ["--metric", cfg.metric]
    if cfg.mode:
        args += ["--mode", cfg.mode]
    if cfg.lr_range is not None:
        args += ["--lr-range", ",".join(_number(x) for x in cfg.lr_range)]
    for key, value in cfg.overrides.items():  # the per-policy LR ranges: {"cosine.lr": [lo, hi]}
        args += ["--override", f"{key}={set_text(value)}"]
    for field, flag in (("trial_backend", "--trainer"), ("gpus_per_trial", "--gpus-per-trial"), ("device", "--device"),
                        ("precision", "--precision"), ("grad_accum", "--grad-accum"), ("zero_stage", "--zero-stage")):
        if getattr(cfg, field) != getattr(d, field):
            args += [flag, _number(getattr(cfg, field))]
    for spec in cfg.evaluators:
        args += ["--evaluator", format_evaluator(spec)]
    if not cfg.warm:
        args.append("--no-warm")
    if cfg.name:
        args += ["--name", cfg.name]
    if db:
        args += ["--db", str(db)]
    missing = []
    for field, what in (("deepspeed_config", "a DeepSpeed config (--deepspeed-config FILE)"),
                        ("threads", "torch threads"), ("cpus_per_trial", "CPUs per Ray trial")):
        if getattr(cfg, field) != getattr(d, field):
            missing.append(what)
    note = ("Not on this line: " + "; ".join(missing) + ".") if missing else ""
    return shlex.join(args), note


class CommandLine(QWidget):
    """A read-only command line with a Copy button, and a note under it (what it leaves out, or
    why there is no line yet)."""

    def __init__(self, parent: QWidget | None = None, *, tooltip: str = "The same from a terminal") -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 2, 0, 2)
        outer.setSpacing(2)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Command line:", self))
        self.edit = QLineEdit(self)
        self.edit.setReadOnly(True)
        self.edit.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.edit.setToolTip(tooltip)
        row.addWidget(self.edit, 1)
        self.copy_button = QToolButton(self)
        self.copy_button.setText("Copy")
        self.copy_button.setToolTip("Copy the command line to the clipboard")
        self.copy_button.clicked.connect(self.copy)
        row.addWidget(self.copy_button)
        outer.addLayout(row)
        self.note = QLabel(self)
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #b45309;")
        self.note.setVisible(False)
        outer.addWidget(self.note)

    def set_command(self, text: str, note: str = "") -> None:
        if self.edit.text() != text:
            self.edit.setText(text)
            self.edit.setCursorPosition(0)
            self.edit.setToolTip(text)
        self.copy_button.setEnabled(bool(text))
        self.note.setText(note)
        self.note.setVisible(bool(note))

    def text(self) -> str:
        return self.edit.text()

    def note_text(self) -> str:
        return self.note.text()

    def copy(self) -> None:
        if self.text():
            QGuiApplication.clipboard().setText(self.text())


def _db_arg(db_path: Callable[[], Any] | None) -> str | None:
    """The ``--db`` to write: the app's database when it is not the one the CLI opens by default."""
    from lrbench_gui.core.paths import default_db_path

    path = db_path() if db_path is not None else None
    if not path:
        return None
    try:
        return None if Path(path).absolute() == default_db_path().absolute() else str(path)
    except OSError:
        return str(path)


def _follow(panel: QWidget, line: CommandLine, update: Callable[[], None]) -> QTimer:
    """Call ``update`` (debounced) whenever a field of ``panel`` changes: every spin box, combo,
    line edit and check box under it, and its parameter forms."""
    from lrbench_gui.qt.param_form import ParamForm

    timer = QTimer(line)
    timer.setSingleShot(True)
    timer.setInterval(120)
    timer.timeout.connect(update)
    kick = lambda *_: timer.start()  # noqa: E731
    for w in panel.findChildren(QAbstractSpinBox):
        if hasattr(w, "valueChanged"):
            w.valueChanged.connect(kick)
    for w in panel.findChildren(QComboBox):
        w.currentTextChanged.connect(kick)
    for w in panel.findChildren(QLineEdit):
        if w is not line.edit:
            w.textChanged.connect(kick)
    for w in panel.findChildren(QCheckBox):
        w.toggled.connect(kick)
    for w in panel.findChildren(ParamForm):
        w.paramsChanged.connect(kick)
        w.paramsRejected.connect(kick)
    return timer


def attach_run(panel: Any, db_path: Callable[[], Any] | None = None) -> CommandLine:
    """A :class:`CommandLine` for the Run panel ``panel``, kept current; add it to a layout.
    ``panel.command_line_db`` may later be set to a callable giving the app's database."""
    line = CommandLine(panel, tooltip="The same trial from a terminal: lrbench run records it in the database too")
    panel.command_line_db = db_path

    def update() -> None:
        try:
            cfg = panel.build_trial()
            line.set_command(run_command(cfg, panel._registry, _db_arg(panel.command_line_db)))
        except Exception as exc:  # noqa: BLE001 - the form is incomplete: say why, keep no stale line
            line.set_command("", f"No command line yet: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")

    line.refresh = update  # type: ignore[attr-defined]
    timer = _follow(panel, line, update)
    panel.use_spec.clicked.connect(lambda *_: timer.start())
    timer.start()  # the line's own timer: it never fires after the panel is gone
    return line


def attach_study(panel: Any, db_path: Callable[[], Any] | None = None) -> CommandLine:
    """A :class:`CommandLine` for the Study panel ``panel``, kept current; add it to a layout.
    Without ``db_path`` it uses ``panel.jobs.db_path``."""
    line = CommandLine(panel, tooltip="The same study from a terminal: lrbench tune records it in the database too")
    provider = db_path or (lambda: getattr(getattr(panel, "jobs", None), "db_path", None))

    def update() -> None:
        try:
            text, note = study_command(panel.config(), panel._registry, _db_arg(provider))
            line.set_command(text, note)
        except Exception as exc:  # noqa: BLE001 - the form is incomplete: say why
            line.set_command("", f"No command line yet: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")

    line.refresh = update  # type: ignore[attr-defined]
    timer = _follow(panel, line, update)
    for box in (getattr(panel, name, None) for name in ("policy_choice", "budget_box", "command_box", "backend_box")):
        if box is not None and hasattr(box, "changed"):
            box.changed.connect(lambda *_: timer.start())
    timer.start()
    return line

