"""The Methods panel: the studies of every kind that has a view (horizon, path-switch, merge and
any plugin's kind whose tuner names a view in :data:`~lrbench_gui.qt.methods.VIEWS`), each drawn
as its own view.

These study kinds answer questions a ranking cannot show: how the best LR moves with the training
horizon (``horizon``), what a constant-LR main path with fast-decay branches costs against
retraining (``path-switch``), where between two checkpoints the merge is best (``merge``). Each
is an ordinary study of its tuner plugin; a view draws the tuner's ``summary_json()`` as stored
in the study record (``extra.summary.tuner``), the same dicts that
:mod:`lrbench_gui.cli.method_plots` draws with matplotlib for the CLI.

The panel lists the database's studies of these kinds (newest first, read on the window's
database-jobs thread), shows the selected one's view, and has a "New..." form per kind
(:class:`~lrbench_gui.qt.methods.form.NewStudyForm`, generated from the tuner) that starts the
study through the window's :class:`~lrbench_gui.qt.study_controller.StudyController` (its trials
stream into the Live panel like any study's). While such a study runs, its view is redrawn each
time one of its trials finishes.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap, QShowEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core.registry import Registry
from lrbench_gui.core.tuning.study import StudyConfig
from lrbench_gui.qt.methods._plots import MethodView, as_dict
from lrbench_gui.qt.methods.form import NewStudyForm, _registered
from lrbench_gui.qt.widgets import MessageBanner

__all__ = ["MethodsPanel", "methods_icon"]

_STATUS_COLORS = {"finished": "#2e7d32", "running": "#1d4ed8", "stopped": "#6b7280", "failed": "#c62828",
                  "created": "#6b7280"}


def methods_icon(size: int = 32) -> QIcon:
    """The sidebar icon: a loss-against-LR parabola with its optimum marked."""
    from lrbench_gui.qt._resources import icon

    found = icon("methods")
    if not found.isNull():
        return found
    pix = QPixmap(size, size)
    pix.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pix)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    s = size / 32
    path = QPainterPath()
    path.moveTo(4 * s, 6 * s)
    path.quadTo(16 * s, 38 * s, 28 * s, 6 * s)
    painter.setPen(QPen(QColor("#0b5cad"), 2.2 * s))
    painter.drawPath(path)
    painter.setPen(QPen(QColor("#0b5cad"), 1.2 * s))
    painter.setBrush(QColor("#f59e0b"))
    painter.drawEllipse(int(12.5 * s), int(18.5 * s), int(7 * s), int(7 * s))
    painter.end()
    return QIcon(pix)


class MethodsPanel(QWidget):
    """The Methods panel; see the module docstring.

    ``controller`` (the window's StudyController) starts the "New..." studies and reports their
    trials; ``jobs`` (the window's DatabaseJobs) reads the database off the GUI thread. Without a
    controller the forms only show the command line.
    """

    # the method studies were read from the database: (records, newest first)
    studiesLoaded = Signal(list)
    # a study's view was (re)drawn: (study_id)
    viewUpdated = Signal(str)
    # a study was started from this panel: (study_id)
    studyRequested = Signal(str)

    def __init__(self, registry: Registry, controller: QObject | None, jobs: Any,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.registry = registry
        self.controller = controller
        self.jobs = jobs
        self.studies: list[dict[str, Any]] = []
        self._views: dict[str, MethodView] = {}  # view key -> view
        self._forms: dict[str, NewStudyForm] = {}  # kind -> form
        self._requested: str | None = None
        self._dark = False
        self._build()
        self._reload_timer = QTimer(self)
        self._reload_timer.setSingleShot(True)
        self._reload_timer.setInterval(400)
        self._reload_timer.timeout.connect(self.refresh)
        if controller is not None:
            controller.studyStarted.connect(self._study_started)
            controller.trialFinished.connect(self._trial_finished)
            controller.studyFinished.connect(self._study_finished)
            controller.recordStored.connect(self._record_stored)
            controller.idle.connect(self._update_buttons)
        self._update_buttons()

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        self.banner = MessageBanner(self)
        layout.addWidget(self.banner)
        split = QSplitter(Qt.Orientation.Horizontal, self)
        left = QWidget(split)
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        head = QHBoxLayout()
        head.addWidget(QLabel("<b>Method studies</b>", left), 1)
        self.new_btn = QToolButton(left)
        self.new_btn.setText("New…")
        self.new_btn.setToolTip("Design a new study of one of these kinds")
        self.new_btn.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.new_menu = QMenu(self.new_btn)
        self.new_btn.setMenu(self.new_menu)
        self._fill_menu()
        self.refresh_btn = QToolButton(left)
        self.refresh_btn.setText("Refresh")
        self.refresh_btn.clicked.connect(self.refresh)
        head.addWidget(self.new_btn)
        head.addWidget(self.refresh_btn)
        lv.addLayout(head)
        self.study_list = QListWidget(left)
        self.study_list.setSpacing(3)
        self.study_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.study_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.study_list.currentItemChanged.connect(lambda *_: self._selection_changed())
        lv.addWidget(self.study_list, 1)
        self.empty_label = QLabel("No study of these kinds in this database yet. Start one with New…, or from "
                                  "a terminal: lrbench study lists the kinds.", left)
        self.empty_label.setWordWrap(True)
        self.empty_label.setStyleSheet("color: #6b7280;")
        lv.addWidget(self.empty_label)
        left.setMinimumWidth(240)

        right = QWidget(split)
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        self.title_label = QLabel(right)
        self.title_label.setTextFormat(Qt.TextFormat.RichText)
        self.title_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        rv.addWidget(self.title_label)
        self.stack = QStackedWidget(right)
        self.placeholder = QLabel("Select a study on the left, or start one with New….", self.stack)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setStyleSheet("color: #6b7280;")
        self.stack.addWidget(self.placeholder)
        rv.addWidget(self.stack, 1)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        split.setSizes([270, 930])
        layout.addWidget(split, 1)

    # Views and forms, built when first needed.

    def kinds(self) -> list[str]:
        """The study kinds this panel shows: every registered tuner whose ``view`` has an entry in
        :data:`~lrbench_gui.qt.methods.VIEWS`, in the table's order."""
        from lrbench_gui.qt.methods import VIEWS

        order = list(VIEWS)
        found = [(order.index(cls.view), name) for name, cls in
                 ((n, _registered(self.registry.tuners, n)) for n in self.registry.tuners)
                 if cls is not None and getattr(cls, "view", "") in VIEWS]
        return [name for _, name in sorted(found)]

    def _view_key(self, kind: str) -> str | None:
        """The view key of ``kind``: its tuner's, or the name itself for a study of a tuner whose
        plugin is not loaded now."""
        from lrbench_gui.qt.methods import VIEWS

        cls = _registered(self.registry.tuners, kind)
        key = getattr(cls, "view", "") if cls is not None else kind
        return key if key in VIEWS else None

    def _fill_menu(self) -> None:
        self.new_menu.clear()
        for kind in self.kinds():
            cls = _registered(self.registry.tuners, kind)
            action = self.new_menu.addAction(f"{kind}: {cls.display_title()}…")
            action.triggered.connect(lambda _=False, k=kind: self.new_study(k))

    def view(self, kind: str) -> MethodView:
        """The view that draws ``kind``'s studies (built on first use, one per view key)."""
        from lrbench_gui.qt.methods import VIEWS

        key = self._view_key(kind)
        if key is None:
            raise KeyError(f"no view for {kind!r} (kinds: {', '.join(self.kinds())})")
        if key not in self._views:
            view = VIEWS[key](self.registry, self.stack)
            view.repeatRequested.connect(self.repeat)
            if self._dark:
                view.theme_changed(True)
            self.stack.addWidget(view)
            self._views[key] = view
        return self._views[key]

    def form(self, kind: str) -> NewStudyForm:
        """The "New..." form of ``kind`` (built on first use)."""
        if kind not in self._forms:
            if kind not in self.kinds():
                raise KeyError(f"no form for {kind!r} (kinds: {', '.join(self.kinds())})")
            form = NewStudyForm(kind, self.registry, lambda: getattr(self.jobs, "db_path", None), self.stack)
            form.startRequested.connect(lambda _k, f=form: self.start_form(f))
            form.cancelled.connect(self._selection_changed)
            self.stack.addWidget(form)
            self._forms[kind] = form
            self._update_buttons()
        return self._forms[kind]

    def current_widget(self) -> QWidget:
        return self.stack.currentWidget()

    # The list.

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh()

    def refresh(self) -> None:
        """Read the method studies on the jobs thread; fills the list (keeps the selection)."""
        if self.jobs is None:
            return

        def load(db: Any) -> list[dict[str, Any]]:
            studies = list(reversed(db.studies()))  # replaced records go to the end: newest first
            return [s for s in studies if self._view_key(_tuner_name(s)) is not None]

        self.jobs.submit(load, self.show_studies,
                         lambda msg: self.banner.show_message(f"Could not read the studies: {msg}", "error"))

    def show_studies(self, studies: list[dict[str, Any]]) -> None:
        """Show ``studies`` (study records, newest first); the running study keeps its live summary."""
        running = self._running_local_study()
        out = []
        for s in studies:
            if running is not None and s.get("id") == running.config.study_id:
                s = self._with_summary(s, self._live_summary(running) or _summary_of(s))
            out.append(s)
        if running is not None and \
                all(s.get("id") != running.config.study_id for s in out):
            out.insert(0, self._running_record(running))
        self.studies = out
        current = self.selected_study_id()
        self.study_list.blockSignals(True)
        self.study_list.clear()
        for s in out:
            kind = _tuner_name(s)
            status = str(s.get("status") or "")
            item = QListWidgetItem(f"{s.get('name') or s.get('id')}\n{kind} · {status} · {s.get('task') or ''}")
            item.setData(Qt.ItemDataRole.UserRole, s.get("id"))
            item.setToolTip(f"{s.get('id')}: {kind} study on {s.get('task')}, {status}")
            if status == "running":
                item.setForeground(QColor(_STATUS_COLORS["running"]))
            self.study_list.addItem(item)
        self.study_list.blockSignals(False)
        self.empty_label.setVisible(not out)
        want = self._requested if any(s.get("id") == self._requested for s in out) else current
        if want:
            self.select_study(want)
        elif self.stack.currentWidget() is self.placeholder and out:
            self.select_study(out[0]["id"])
        self.studiesLoaded.emit(out)

    def study_ids(self) -> list[str]:
        return [self.study_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.study_list.count())]

    def selected_study_id(self) -> str | None:
        item = self.study_list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def selected_study(self) -> dict[str, Any] | None:
        sid = self.selected_study_id()
        return next((s for s in self.studies if s.get("id") == sid), None)

    def select_study(self, study_id: str) -> bool:
        """Select ``study_id`` in the list and show its view; False when it is not listed."""
        for i in range(self.study_list.count()):
            if self.study_list.item(i).data(Qt.ItemDataRole.UserRole) == study_id:
                if self.study_list.currentRow() == i:
                    self._selection_changed()
                else:
                    self.study_list.setCurrentRow(i)
                return True
        return False

    def _selection_changed(self) -> None:
        s = self.selected_study()
        if s is None:
            self.title_label.clear()
            self.stack.setCurrentWidget(self.placeholder)
            return
        kind = _tuner_name(s)
        extra = as_dict(s.get("extra"))
        trials = as_dict(extra.get("summary")).get("trials")
        status = str(s.get("status") or "")
        self.title_label.setText(
            f"<b>{_escape(s.get('name') or s.get('id'))}</b> &nbsp;<span style='color:#6b7280'>{kind} · "
            f"{_escape(s.get('task') or '')} · <span style='color:{_STATUS_COLORS.get(status, '#6b7280')}'>"
            f"{_escape(status)}</span>" + (f" · {trials} trials" if isinstance(trials, int) else "")
            + f" · {_escape(s.get('id'))}</span>")
        view = self.view(kind)
        view.set_summary(_summary_of(s))
        self.stack.setCurrentWidget(view)
        view.set_can_start(self._can_start() and bool(extra.get("config")))
        self.viewUpdated.emit(str(s.get("id")))

    # Starting studies.

    def _can_start(self) -> bool:
        return self.controller is not None and not self.controller.is_busy()

    def _update_buttons(self, *_: Any) -> None:
        can = self._can_start()
        for form in self._forms.values():
            form.start_btn.setEnabled(can and form.kind in self.registry.tuners)
            form.start_btn.setToolTip("" if can else "A study is running: stop it first, or copy the command line"
                                      if self.controller is not None else "Copy the command line to run it")
        for view in self._views.values():
            view.set_can_start(can)

    def new_study(self, kind: str, from_study: dict[str, Any] | None = None) -> NewStudyForm:
        """Show the "New..." form of ``kind`` (filled from ``from_study``'s configuration if given)."""
        form = self.form(kind)
        cfg = as_dict(as_dict((from_study or {}).get("extra")).get("config"))
        if cfg:
            form.set_values(cfg.get("tuner_params"), task=cfg.get("task"), task_params=cfg.get("task_params"))
        self.title_label.setText(f"<b>New {kind} study</b>")
        self.stack.setCurrentWidget(form)
        form.update_command()
        return form

    def start_form(self, form: NewStudyForm) -> bool:
        """Start the study ``form`` describes; problems show in the banner. True when it started."""
        try:
            cfg = form.config()
        except ValueError as exc:
            self.banner.show_message(f"Cannot start the study: {exc}", "error")
            return False
        return self.start(cfg)

    def start(self, config: StudyConfig) -> bool:
        """Start ``config`` through the controller (its trials show in the Live panel)."""
        if self.controller is None:
            self.banner.show_message("Studies cannot start here; run the command line instead.", "warning")
            return False
        self._requested = config.study_id
        try:
            self.controller.start(config)
        except Exception as exc:  # noqa: BLE001 - unknown names, bad params, busy: all said in words
            self._requested = None
            self.banner.show_message(f"Cannot start the study: {exc}", "error")
            return False
        self.banner.dismiss()
        self.studyRequested.emit(config.study_id)
        self._update_buttons()
        return True

    def repeat(self, tuner_params: dict[str, Any], suffix: str) -> bool:
        """Run the selected study again as a new study with ``tuner_params`` changed, named with
        ``suffix`` ("merge on X (grid of 41)")."""
        s = self.selected_study()
        cfg = as_dict(as_dict((s or {}).get("extra")).get("config"))
        if not cfg:
            self.banner.show_message("Select a study first.", "warning")
            return False
        obj = {k: v for k, v in cfg.items() if k != "study_id"}
        obj["tuner_params"] = {**(cfg.get("tuner_params") or {}), **tuner_params}
        base = str(cfg.get("name") or (s or {}).get("name") or cfg.get("tuner"))
        obj["name"] = f"{base} ({suffix})"
        try:
            config = StudyConfig.model_validate(obj)
        except Exception as exc:  # noqa: BLE001 - a study stored by another version
            self.banner.show_message(f"Cannot repeat study {cfg.get('study_id')}: {str(exc).splitlines()[0]}", "error")
            return False
        return self.start(config)

    def dense_grid(self, points: int) -> bool:
        """Run the selected merge study again with a dense grid of ``points`` lambdas."""
        if _tuner_name(self.selected_study() or {}) != "merge":
            self.banner.show_message("Select a merge study first.", "warning")
            return False
        return self.repeat({"grid": int(points)}, f"grid of {int(points)}")

    # A running study.

    def _running_local_study(self) -> Any:
        c = self.controller
        study = getattr(c, "study", None) if c is not None and c.is_busy() else None
        # a Ray study lives on its own thread until it ends: read it from the database instead
        if study is None or study.config.backend != "local" or self._view_key(study.config.tuner) is None:
            return None
        return study

    @staticmethod
    def _live_summary(study: Any) -> dict[str, Any] | None:
        try:
            return study.tuner.summary_json()
        except Exception:  # noqa: BLE001 - mid-study, a tuner's summary may not be ready
            return None

    @staticmethod
    def _with_summary(record: dict[str, Any], tuner_summary: dict[str, Any]) -> dict[str, Any]:
        extra = dict(as_dict(record.get("extra")))
        extra["summary"] = {**as_dict(extra.get("summary")), "tuner": tuner_summary}
        return {**record, "extra": extra}

    def _running_record(self, study: Any) -> dict[str, Any]:
        cfg = study.config
        return {"id": cfg.study_id, "name": cfg.name or f"{cfg.tuner} on {cfg.task}", "task": cfg.task,
                "tuner": {"name": cfg.tuner, "params": cfg.tuner_params}, "status": "running",
                "extra": {"config": cfg.model_dump(mode="json"),
                          "summary": {"trials": len(study.results), "tuner": self._live_summary(study) or {}}}}

    def _study_started(self, study_id: str, config: Any) -> None:
        self._update_buttons()
        if self._view_key(str(getattr(config, "tuner", ""))) is None:
            return
        study = self._running_local_study()
        record = self._running_record(study) if study is not None else {
            "id": study_id, "name": config.name, "task": config.task, "status": "running",
            "tuner": {"name": config.tuner, "params": config.tuner_params},
            "extra": {"config": config.model_dump(mode="json"), "summary": {}}}
        self.show_studies([record, *[s for s in self.studies if s.get("id") != study_id]])

    def _trial_finished(self, _trial_id: str, _record: dict) -> None:
        study = self._running_local_study()
        if study is None:
            return
        sid = study.config.study_id
        record = self._running_record(study)
        self.studies = [record if s.get("id") == sid else s for s in self.studies]
        if sid not in self.study_ids():
            self.show_studies([record, *self.studies])
        elif self.selected_study_id() == sid:
            self._selection_changed()

    def _study_finished(self, _study_id: str, _status: str, result: dict) -> None:
        self._update_buttons()
        if self._view_key(str(as_dict(result.get("config")).get("tuner") or "")) is not None or self.isVisible():
            self.refresh()  # the stored record: its final status and summary

    def _record_stored(self, _table: str, _record_id: str) -> None:
        # a Ray study's progress reaches this panel through the database
        c = self.controller
        study = getattr(c, "study", None)
        if study is not None and self._view_key(study.config.tuner) and study.config.backend != "local":
            self._reload_timer.start()

    # The window.

    def set_registry(self, registry: Registry) -> None:
        self.registry = registry
        for form in self._forms.values():
            form.set_registry(registry)
        for view in self._views.values():
            view.set_registry(registry)
        self._fill_menu()
        self._update_buttons()

    def theme_changed(self, dark: bool) -> None:
        self._dark = dark  # the views redraw their text themselves (apply_theme reaches them too)


def _tuner_name(record: dict[str, Any]) -> str:
    tuner = record.get("tuner")
    if isinstance(tuner, dict):
        return str(tuner.get("name") or "")
    return str(tuner or as_dict(as_dict(record.get("extra")).get("config")).get("tuner") or "")


def _summary_of(record: dict[str, Any]) -> dict[str, Any]:
    return as_dict(as_dict(as_dict(record.get("extra")).get("summary")).get("tuner"))


def _escape(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
