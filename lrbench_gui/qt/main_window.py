"""The main window: a sidebar of panels that reads as the workflow, Policies first, Plugins last.

Later panels (Study, Live, Results) slot in with :meth:`MainWindow.add_panel`, which by default
inserts before the Plugins panel so that it stays last.
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QSettings, QSize, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QIcon, QKeySequence
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

from .. import __version__
from ..core.registry import Registry
from ._resources import icon
from .plugin_panel import PluginPanel
from .policy_panel import PolicyPanel

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
        if registry is None:
            from ..plugins import get_registry

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
        # trials run in subprocesses; their records go to the database on a worker thread
        from ..core.paths import default_db_path
        from .db_panel import DatabasePanel
        from .db_writer import DbWriter
        from .run_panel import RunPanel
        from .trial_runner import TrialRunner

        self.db_path = db_path or default_db_path()
        self.runner = TrialRunner(1, parent=self)
        self.db_writer = DbWriter(self.db_path, parent=self)
        self.run_panel = RunPanel(registry, self.runner, spec_provider=self.policy_panel.current_spec)
        self.results_panel = DatabasePanel(self.db_path)
        self.run_panel.trialRecorded.connect(self.db_writer.write_trial)
        self.db_writer.written.connect(lambda _tid: self.results_panel.refresh())
        self.db_writer.failed.connect(lambda _tid, msg: self.statusBar().showMessage(msg, 15000))
        self.policy_panel.statusMessage.connect(lambda text: self.statusBar().showMessage(text, 5000))
        self.plugin_panel.registryReloaded.connect(self.set_registry)

        self._build_menus()
        self._build_status_bar()
        self.add_panel("Policies", self.policy_panel, icon=icon("policies"))
        self.add_panel("Run", self.run_panel, icon=icon("run"))
        self.add_panel("Results", self.results_panel, icon=icon("results"))
        self.add_panel("Plugins", self.plugin_panel, index=-1, icon=icon("plugins"))
        self.show_panel("Policies")
        self._update_status()
        if settings is not None:
            geometry = settings.value("window/geometry")
            if isinstance(geometry, QByteArray) and not geometry.isEmpty():
                self.restoreGeometry(geometry)

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
        status.addPermanentWidget(self.plugin_warning)
        status.addPermanentWidget(self.counts_label)

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
        self.policy_panel.set_registry(registry)
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

    def stop_all_trials(self, timeout_ms: int = 15000) -> None:
        """Stop every trial (SIGTERM, then SIGKILL) and wait until each is recorded."""
        from PySide6.QtCore import QEventLoop, QTimer

        loop = QEventLoop()
        self.runner.idle.connect(loop.quit)
        QTimer.singleShot(timeout_ms, loop.quit)
        self.runner.cancel_all(grace=5.0)
        if self.runner.is_busy():
            loop.exec()
        self.runner.idle.disconnect(loop.quit)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.runner.is_busy():
            from PySide6.QtWidgets import QMessageBox

            answer = QMessageBox.question(
                self, "Trials are running",
                "Trials are still running. Stop them and quit? They will be recorded as stopped.",
            ) if not getattr(self, "confirm_close", None) else self.confirm_close()
            if answer not in (True, QMessageBox.StandardButton.Yes):
                event.ignore()
                return
            self.stop_all_trials()
        self.results_panel.shutdown()
        self.db_writer.close()
        if self._settings is not None:
            self._settings.setValue("window/geometry", self.saveGeometry())
        super().closeEvent(event)
