"""The main window: a sidebar of panels that reads as the workflow, Policies first, Plugins last.

Policies -> Run (one trial) -> Study (design a study, or run the demo) -> Live (the running study)
-> Results (the database) -> Methods (the horizon, path-switch and merge studies) -> Plugins. More
panels slot in with :meth:`MainWindow.add_panel`, which by default inserts before the Plugins panel
so that it stays last.

The window owns the trial runner (QProcess per trial), the study controller that drives studies
with it, and the one database job queue, ``db_jobs``
(:class:`~lrbench_gui.qt.db_jobs.DatabaseJobs`), that every panel reads and writes through: the
Run panel's trials, the studies' records, resume, recipes, the Results panel and the Methods
panel (:meth:`MainWindow.database_jobs`). Closing with trials running asks first (a test sets
``window.confirm_close = lambda: True``), then stops them; they are recorded as stopped and the
study as stopped, resumable from the Study panel's banner on the next start.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QSettings, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QIcon, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QStackedWidget,
    QStyle,
    QToolButton,
    QWidget,
)

from lrbench_gui import __version__
from lrbench_gui.core.registry import Registry
from lrbench_gui.qt._resources import icon
from lrbench_gui.qt.plugin_panel import PluginPanel
from lrbench_gui.qt.policies import PolicyPanel

if TYPE_CHECKING:
    from PySide6.QtWidgets import QDialog

    from lrbench_gui.qt.db_jobs import DatabaseJobs
    from lrbench_gui.qt.settings_dialog import AppSettings, SettingsDialog

__all__ = ["MainWindow"]


class MainWindow(QMainWindow):
    """The lrbench window. ``registry`` defaults to the process-wide one (loading plugins)."""

    #: Fires when another panel becomes visible; carries the panel's name.
    panelChanged = Signal(str)

    def __init__(
        self,
        registry: Registry | None = None,
        parent: QWidget | None = None,
        *,
        settings: QSettings | None = None,
        db_path: "Path | None" = None,
    ) -> None:
        super().__init__(parent)
        from lrbench_gui.qt.gc_guard import install_gui_thread_gc

        install_gui_thread_gc()
        if registry is None:
            from lrbench_gui.plugins import get_registry

            registry = get_registry()
        self._registry = registry
        self._settings = settings
        self._panels: dict[str, QWidget] = {}
        self._view_actions: dict[str, QAction] = {}
        self.setWindowTitle("lrbench — learning-rate policy workbench")
        self.setWindowIcon(icon("lrbench"))
        self.resize(1360, 860)

        central = QWidget(self)
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.nav = QListWidget(central)
        self.nav.setObjectName("panelNav")
        self.nav.setIconSize(QSize(22, 22))
        self.nav.setFixedWidth(150)
        self.nav.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.nav.currentRowChanged.connect(self._nav_changed)
        self.stack = QStackedWidget(central)
        layout.addWidget(self.nav)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)

        self.policy_panel = PolicyPanel(registry, settings=settings)
        self.plugin_panel = PluginPanel(registry)
        # trials run in subprocesses; their records go to the database on the jobs thread
        from lrbench_gui.core.paths import default_db_path
        from lrbench_gui.qt.db_jobs import DatabaseJobs
        from lrbench_gui.qt.db_panel import DatabasePanel
        from lrbench_gui.qt.live import LivePanel
        from lrbench_gui.qt.methods import MethodsPanel, methods_icon
        from lrbench_gui.qt.run_panel import RunPanel
        from lrbench_gui.qt.settings_dialog import AppSettings
        from lrbench_gui.qt.study import StudyPanel
        from lrbench_gui.qt.study_controller import StudyController
        from lrbench_gui.qt.trial_runner import TrialRunner

        self.app_settings = AppSettings.load(settings) if settings is not None else AppSettings()
        # an explicit path wins, then $LRBENCH_DB, then the settings, then the data folder; the
        # title and the status bar say which, and the Settings dialog why it cannot change it
        if db_path is not None:
            self.db_source = "given"
        elif os.environ.get("LRBENCH_DB"):
            self.db_source = "LRBENCH_DB"
        elif self.app_settings.db_path:
            db_path, self.db_source = Path(self.app_settings.db_path).expanduser(), "settings"
        else:
            self.db_source = "default"
        self.db_path = Path(db_path) if db_path else default_db_path()
        self.runner = TrialRunner(1, parent=self)
        self.runner.warm = self.app_settings.warm  # the settings' "Reuse trial processes"
        self.db_jobs = DatabaseJobs(self.db_path, parent=self, registry=registry)
        self.study_controller = StudyController(self.runner, self.db_jobs, registry, parent=self)
        self.study_controller.gpus = list(self.app_settings.gpus)
        self.run_panel = RunPanel(registry, self.runner, spec_provider=self.policy_panel.current_spec,
                                  steps_provider=self.policy_panel.total_steps)
        self.study_panel = StudyPanel(registry, self.study_controller, self.db_jobs, defaults=self._study_defaults)
        self.live_panel = LivePanel(self.study_controller, self.db_jobs, registry)
        self.results_panel = DatabasePanel(jobs=self.db_jobs)
        self.methods_panel = MethodsPanel(registry, self.study_controller, self.db_jobs)
        self._results_timer = QTimer(self)
        self._results_timer.setSingleShot(True)
        self._results_timer.setInterval(300)
        self._results_timer.timeout.connect(lambda: self.results_panel.refresh())
        self.run_panel.trialRecorded.connect(self._store_run_trial)
        self.study_controller.studyStarted.connect(lambda *_: self.show_panel("Live"))
        self.study_controller.recordStored.connect(lambda *_: self._results_timer.start())
        self.study_controller.studyFinished.connect(self._study_finished)
        self.study_panel.studiesLoaded.connect(self._studies_loaded)
        self.live_panel.recipeSaved.connect(lambda rec: self.statusBar().showMessage(f"Saved recipe {rec['name']!r}", 8000))
        self.policy_panel.statusMessage.connect(lambda text: self.statusBar().showMessage(text, 5000))
        self.plugin_panel.registryReloaded.connect(self.set_registry)

        self._build_menus()
        self._build_status_bar()
        self.add_panel("Policies", self.policy_panel, icon=icon("policies"))
        self.add_panel("Run", self.run_panel, icon=icon("run"))
        self.add_panel("Study", self.study_panel, icon=icon("study"))
        self.add_panel("Live", self.live_panel, icon=icon("live"))
        from lrbench_gui.qt.watch_panel import WatchPanel

        self.watch_panel = WatchPanel()
        self.add_panel("Watch", self.watch_panel, icon=icon("watch"))
        self.add_panel("Results", self.results_panel, icon=icon("results"))
        self.add_panel("Methods", self.methods_panel, icon=methods_icon())
        self.add_panel("Plugins", self.plugin_panel, index=-1, icon=icon("plugins"))
        from lrbench_gui.qt.recipes_panel import add_to_window

        add_to_window(self)  # the Recipes panel; merge from Results; Policy code in Policies
        self.show_panel("Policies")
        self._update_status()
        if settings is not None:
            geometry = settings.value("window/geometry")
            if isinstance(geometry, QByteArray) and not geometry.isEmpty():
                self.restoreGeometry(geometry)
            if self.app_settings.theme != "light":
                from lrbench_gui.qt.settings_dialog import apply_theme

                apply_theme(self.app_settings.theme, self)
        self._shown_once = False

    # panels

    def add_panel(self, name: str, widget: QWidget, index: int | None = None, *, icon: QIcon | None = None) -> QWidget:
        """Add a panel to the sidebar and return it.

        ``index`` None puts it before the Plugins panel (which stays last); -1 appends; another
        number is a position. A panel's name is its key for :meth:`show_panel` and ``--panel``.
        """
        if name in self._panels:
            raise ValueError(f"a panel named {name!r} already exists")
        count = self.nav.count()
        if index is None:
            index = count - 1 if "Plugins" in self._panels and self._panel_index("Plugins") == count - 1 else count
        elif index < 0 or index > count:
            index = count
        item = QListWidgetItem(icon or QIcon(), name)
        item.setData(Qt.ItemDataRole.UserRole, name)
        item.setSizeHint(QSize(130, 42))
        self.nav.insertItem(index, item)
        self.stack.insertWidget(index, widget)
        self._panels[name] = widget
        self._rebuild_view_menu()
        return widget

    def panel(self, name: str) -> QWidget:
        return self._panels[name]

    def panel_names(self) -> list[str]:
        """The panels in sidebar order."""
        return [self.nav.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.nav.count())]

    def current_panel(self) -> str:
        item = self.nav.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else ""

    def show_panel(self, name: str) -> None:
        """Show the panel called ``name`` (case-insensitive); ``KeyError`` listing the names otherwise."""
        for i, known in enumerate(self.panel_names()):
            if known.lower() == name.lower():
                self.nav.setCurrentRow(i)
                return
        raise KeyError(f"no panel {name!r} (panels: {', '.join(self.panel_names())})")

    def _panel_index(self, name: str) -> int:
        return self.panel_names().index(name)

    def _nav_changed(self, row: int) -> None:
        if row < 0:
            return
        self.stack.setCurrentIndex(row)
        name = self.nav.item(row).data(Qt.ItemDataRole.UserRole)
        action = self._view_actions.get(name)
        if action is not None:
            action.setChecked(True)
        self.panelChanged.emit(name)

    # menus and status bar

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        open_action = file_menu.addAction("&Open spec…")
        open_action.setShortcut(QKeySequence.StandardKey.Open)
        open_action.triggered.connect(self._open_spec)
        save_action = file_menu.addAction("&Save spec…")
        save_action.setShortcut(QKeySequence.StandardKey.Save)
        save_action.triggered.connect(self._save_spec)
        file_menu.addSeparator()
        self.settings_action = file_menu.addAction("Se&ttings…")
        self.settings_action.setShortcut(QKeySequence.StandardKey.Preferences)
        self.settings_action.setMenuRole(QAction.MenuRole.PreferencesRole)
        self.settings_action.triggered.connect(self.open_settings)
        file_menu.addSeparator()
        quit_action = file_menu.addAction("&Quit")
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        quit_action.triggered.connect(self.close)

        self.view_menu = bar.addMenu("&View")
        self.log_action = QAction("&Log scale", self)
        self.log_action.setCheckable(True)
        self.log_action.setShortcut("Ctrl+L")
        self.log_action.toggled.connect(self.policy_panel.set_log_scale)
        self.policy_panel.log_check.toggled.connect(self.log_action.setChecked)
        self.reload_action = QAction("&Reload plugins", self)
        self.reload_action.setShortcut("F5")
        self.reload_action.triggered.connect(self.plugin_panel.reload)

        help_menu = bar.addMenu("&Help")
        docs = help_menu.addAction("&Documentation")
        docs.setShortcut(QKeySequence.StandardKey.HelpContents)
        docs.triggered.connect(lambda: self.open_docs())
        keys = help_menu.addAction("&Keyboard shortcuts")
        keys.setShortcut("Ctrl+/")
        keys.triggered.connect(lambda: self.open_shortcuts())
        help_menu.addSeparator()
        about = help_menu.addAction("&About lrbench")
        about.setMenuRole(QAction.MenuRole.AboutRole)
        about.triggered.connect(self.show_about)

    def _rebuild_view_menu(self) -> None:
        self.view_menu.clear()
        self._view_actions = {}
        for i, name in enumerate(self.panel_names()):
            action = self.view_menu.addAction(name)
            action.setCheckable(True)
            action.setChecked(name == self.current_panel())
            if i < 9:
                action.setShortcut(f"Ctrl+{i + 1}")
            action.triggered.connect(lambda _=False, n=name: self.show_panel(n))
            self._view_actions[name] = action
        self.view_menu.addSeparator()
        self.view_menu.addAction(self.log_action)
        self.view_menu.addAction(self.reload_action)

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        self.counts_label = QLabel(status)
        self.counts_label.setStyleSheet("color: #4b5563; padding: 0 8px;")
        self.plugin_warning = QToolButton(status)
        self.plugin_warning.setObjectName("pluginWarning")
        self.plugin_warning.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning))
        self.plugin_warning.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.plugin_warning.setAutoRaise(True)
        self.plugin_warning.setCursor(Qt.CursorShape.PointingHandCursor)
        self.plugin_warning.setToolTip("Show the load errors in the Plugins panel")
        self.plugin_warning.clicked.connect(lambda: self.show_panel("Plugins"))
        self.db_label = QLabel(status)
        self.db_label.setObjectName("databaseLabel")
        self.db_label.setStyleSheet("color: #4b5563; padding: 0 8px;")
        status.addPermanentWidget(self.plugin_warning)
        status.addPermanentWidget(self.db_label)
        status.addPermanentWidget(self.counts_label)
        self._show_database()

    _DB_WHY = {"given": "given at start", "LRBENCH_DB": "from LRBENCH_DB", "settings": "from Settings",
               "default": "the default", "switched": "opened in this session"}

    def database_text(self) -> str:
        """Which database is open and why: ``db.json (from LRBENCH_DB)``."""
        return f"{Path(self.db_path).name} ({self._DB_WHY.get(self.db_source, self.db_source)})"

    def _db_override(self) -> str | None:
        """Why the Settings dialog cannot choose the database now, or None when it can."""
        if self.db_source == "LRBENCH_DB":
            return (f"$LRBENCH_DB={os.environ.get('LRBENCH_DB', '')} chooses the database and wins over this "
                    "setting at every start: unset it to choose the database here.")
        if self.db_source == "given":
            return "This window was given its database when it started."
        return None

    def _show_database(self) -> None:
        """The window title and the status bar: which database is open, and why that one."""
        self.setWindowTitle(f"lrbench — {self.database_text()} — learning-rate policy workbench")
        self.db_label.setText(f"Database: {self.database_text()}")
        self.db_label.setToolTip(f"{Path(self.db_path).absolute()}\n" + (
            self._db_override() or "Settings (File > Settings) chooses another."))

    def _update_status(self) -> None:
        reg = self._registry
        n_pol, n_plug = len(reg.policies), len(reg.plugins)
        self.counts_label.setText(
            f"{n_pol} {'policy' if n_pol == 1 else 'policies'} · {n_plug} plugin{'s' if n_plug != 1 else ''}"
        )
        failed = sorted({p.plugin for p in reg.problems})
        if failed:
            n = len(failed)
            self.plugin_warning.setText(f"{n} plugin{'s' if n != 1 else ''} had problems")
            self.plugin_warning.setToolTip(
                "Show the load errors in the Plugins panel:\n" + "\n".join(f"• {p.plugin}: {p.message}" for p in reg.problems)
            )
        self.plugin_warning.setVisible(bool(failed))

    def theme_changed(self, dark: bool) -> None:
        """The status bar's counts in a grey that reads on the light or dark theme."""
        self.counts_label.setStyleSheet(f"color: {'#9ca3af' if dark else '#4b5563'}; padding: 0 8px;")
        self.db_label.setStyleSheet(f"color: {'#9ca3af' if dark else '#4b5563'}; padding: 0 8px;")

    def status_text(self) -> str:
        """What the status bar's permanent part says (for tests)."""
        warn = self.plugin_warning.text() if self.plugin_warning.isVisibleTo(self) else ""
        return " | ".join(t for t in (self.counts_label.text(), warn) if t)

    # registry

    @property
    def registry(self) -> Registry:
        return self._registry

    def set_registry(self, registry: Registry) -> None:
        """Show ``registry`` everywhere (after a plugin reload)."""
        self._registry = registry
        self.db_jobs.set_registry(registry)
        self.policy_panel.set_registry(registry)
        self.run_panel.set_registry(registry)
        self.study_controller.set_registry(registry)
        self.study_panel.set_registry(registry)
        self.live_panel.registry = registry
        self.methods_panel.set_registry(registry)
        if self.plugin_panel.registry is not registry:
            self.plugin_panel.set_registry(registry)
        self._update_status()

    # actions

    def _open_spec(self) -> None:
        self.show_panel("Policies")
        self.policy_panel.open_spec_dialog()

    def _save_spec(self) -> None:
        self.show_panel("Policies")
        self.policy_panel.save_spec_dialog()

    def open_docs(self, page: str = "gui.md") -> "QDialog":
        """Help > Documentation: the local README and docs/*.md, rendered in the app."""
        from lrbench_gui.qt.help import DocsViewer

        dialog = DocsViewer(self, page=page)
        dialog.finished.connect(dialog.deleteLater)
        dialog.show()
        return dialog

    def open_shortcuts(self) -> "QDialog":
        """Help > Keyboard shortcuts: every shortcut of the menus."""
        from lrbench_gui.qt.help import ShortcutsDialog

        dialog = ShortcutsDialog(self.menuBar(), self)
        dialog.finished.connect(dialog.deleteLater)
        dialog.show()
        return dialog

    def show_about(self) -> None:
        QMessageBox.about(
            self,
            "About lrbench",
            f"<h3>lrbench {__version__}</h3>"
            "<p>A workbench for choosing and tuning learning-rate policies: visualize and compose "
            "policies, run studies, and keep what works in a policy database.</p>"
            f"<p>{len(self._registry.policies)} policies from {len(self._registry.plugins)} plugins.</p>"
            "<p>Apache-2.0 licensed.</p>",
        )

    # settings

    def _study_defaults(self) -> dict:
        return self.app_settings.to_json()

    def open_settings(self) -> "SettingsDialog":
        """Open the settings dialog (window-modal, not blocking); OK applies the values."""
        from PySide6.QtCore import QSettings as _QSettings

        from lrbench_gui.core.paths import plugins_dir
        from lrbench_gui.qt.settings_dialog import SettingsDialog

        if self._settings is None:
            self._settings = _QSettings()
        dialog = SettingsDialog(self._settings, self, current_db=self.db_path, current_plugins=plugins_dir(),
                                db_override=self._db_override())
        dialog.settingsApplied.connect(self.apply_settings)
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()
        return dialog

    def apply_settings(self, values: "AppSettings") -> None:
        """Use new settings now: theme, workers and GPUs, backend default, database, plugins folder."""
        from lrbench_gui.core.paths import plugins_dir
        from lrbench_gui.qt.settings_dialog import apply_theme

        self.app_settings = values
        apply_theme(values.theme, self)
        self.study_controller.gpus = list(values.gpus)
        if not self.runner.is_busy():
            self.runner.set_slots(list(values.gpus) if values.gpus else values.cpu_workers)
        self.runner.warm = values.warm
        if not self.study_controller.is_busy():
            self.study_panel.apply_defaults()
        busy = self.runner.is_busy() or self.study_controller.is_busy()
        messages = []
        want_db = Path(values.db_path).expanduser() if values.db_path else None
        if self._db_override():
            want_db = None  # $LRBENCH_DB (or the path given at start) wins, now as at the next start
        if want_db is not None and want_db.absolute() != Path(self.db_path).absolute():
            if busy:
                messages.append("the new database is used once the running trials end: apply the settings again then")
            else:
                self.set_db_path(want_db)
                self.db_source = "settings"
                self._show_database()
                messages.append(f"database: {want_db}")
        want_plugins = Path(values.plugins_dir).expanduser() if values.plugins_dir else None
        if want_plugins is not None and want_plugins.absolute() != plugins_dir().absolute():
            os.environ["LRBENCH_PLUGINS_DIR"] = str(want_plugins)
            self.plugin_panel.reload()
            messages.append(f"plugins folder: {want_plugins}")
        self.statusBar().showMessage("Settings applied" + (": " + "; ".join(messages) if messages else "."), 8000)

    def set_db_path(self, path: "Path | str") -> None:
        """Switch every panel to the database at ``path`` (no trial may be running)."""
        if self.runner.is_busy() or self.study_controller.is_busy():
            raise RuntimeError("stop the running trials before switching databases")
        self.db_path = Path(path)
        self.db_source = "switched"
        self._show_database()
        self.db_jobs.set_db_path(self.db_path)
        self.results_panel.refresh()
        self.study_panel.refresh_studies()
        if self.methods_panel.isVisible():
            self.methods_panel.refresh()

    def database_jobs(self) -> "DatabaseJobs":
        """The window's database job queue (one thread, jobs in order): how a panel reads or
        writes the database off the GUI thread."""
        return self.db_jobs

    def _store_run_trial(self, record: dict) -> None:
        """The Run panel's finished trial, to the database; a refusal is said in the status bar."""
        self.db_jobs.write_trial(record, on_done=lambda _tid: self._results_timer.start(),
                                 on_failed=lambda msg: self.statusBar().showMessage(msg[:1].upper() + msg[1:], 15000))

    def _studies_loaded(self, _studies: list) -> None:
        unfinished = self.study_panel.unfinished_studies()
        if unfinished and not self.study_controller.is_busy():
            n = len(unfinished)
            self.statusBar().showMessage(
                f"{n} unfinished stud{'y' if n == 1 else 'ies'}: resume from the Study panel (Ctrl+3).", 20000)

    def _study_finished(self, study_id: str, status: str, _result: dict) -> None:
        self.results_panel.refresh()
        self.statusBar().showMessage(f"Study {study_id} {status}; its trials are in Results.", 10000)

    # closing

    def trials_running(self) -> bool:
        return self.runner.is_busy() or self.study_controller.is_busy()

    def stop_all_trials(self, timeout_ms: int = 15000) -> None:
        """Stop every trial (SIGTERM, then SIGKILL) and wait until each is recorded, and the
        running study with them (recorded as stopped, resumable)."""
        from PySide6.QtCore import QEventLoop

        loop = QEventLoop()

        def check(*_: object) -> None:
            if not self.trials_running():
                loop.quit()

        self.runner.idle.connect(check)
        self.study_controller.idle.connect(check)
        QTimer.singleShot(timeout_ms, loop.quit)
        self.study_controller.stop()  # first: no new trials while the running ones stop
        self.runner.cancel_all(grace=5.0)
        if self.trials_running():
            loop.exec()
        self.runner.idle.disconnect(check)
        self.study_controller.idle.disconnect(check)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._shown_once:
            # "Reopen shows the last studies and offers to resume unfinished ones"; read once the
            # window is up (a window that is never shown starts no database thread)
            self._shown_once = True
            self.study_panel.refresh_studies()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.trials_running():
            from PySide6.QtWidgets import QMessageBox

            answer = QMessageBox.question(
                self, "Trials are running",
                "Trials are still running. Stop them and quit? They will be recorded as stopped.",
            ) if not getattr(self, "confirm_close", None) else self.confirm_close()
            if answer not in (True, QMessageBox.StandardButton.Yes):
                event.ignore()
                return
            self.stop_all_trials()
        self.study_controller.shutdown()
        self.results_panel.shutdown()
        self.db_jobs.close()
        if self._settings is not None:
            self._settings.setValue("window/geometry", self.saveGeometry())
        super().closeEvent(event)
