"""Small things the panels share: an inline message banner, colour swatches, and the colour of
each trial and study status."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

from lrbench_gui.core.records import StudyStatus, TrialStatus

__all__ = ["MessageBanner", "swatch_icon", "STATUS_COLORS", "STUDY_STATUS_COLORS"]

#: the colour of a trial's status, the same in every panel
STATUS_COLORS: dict[str, str] = {
    TrialStatus.PENDING: "#6b7280",
    TrialStatus.RUNNING: "#1d4ed8",
    TrialStatus.COMPLETED: "#2e7d32",
    TrialStatus.STOPPED: "#6b7280",
    TrialStatus.DIVERGED: "#ef6c00",
    TrialStatus.FAILED: "#c62828",
    TrialStatus.PRUNED: "#7c3aed",
}
#: the colour of a study's status
STUDY_STATUS_COLORS: dict[str, str] = {
    StudyStatus.FINISHED: "#2e7d32",
    StudyStatus.RUNNING: "#1d4ed8",
    StudyStatus.STOPPED: "#6b7280",
    StudyStatus.FAILED: "#c62828",
    StudyStatus.CREATED: "#6b7280",
}

_KINDS = {
    "error": ("#fdecea", "#f1b5b0", "#8a1c1c"),
    "warning": ("#fff7e0", "#f0d48a", "#6b4e00"),
    "info": ("#e8f1fb", "#b9d2ef", "#1d3f6e"),
}


class MessageBanner(QFrame):
    """A dismissable one-message strip shown inside a panel instead of a modal dialog.

    Errors stay until dismissed or replaced; infos hide themselves after a few seconds. Nothing
    here blocks, so tests and users keep working while a message is shown.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageBanner")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        self._label = QLabel(self)
        self._label.setWordWrap(True)
        self._label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self._label, 1)
        close = QToolButton(self)
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.dismiss)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.dismiss)
        self.kind = ""
        self.setVisible(False)

    def text(self) -> str:
        return self._label.text()

    def show_message(self, text: str, kind: str = "error", timeout_ms: int | None = None) -> None:
        """Show ``text``; ``kind`` is error, warning or info. Infos hide after 6 s by default."""
        bg, border, fg = _KINDS.get(kind, _KINDS["info"])
        self.kind = kind
        self.setStyleSheet(
            f"QFrame#messageBanner {{ background: {bg}; border: 1px solid {border}; border-radius: 4px; }}"
            f"QFrame#messageBanner QLabel {{ color: {fg}; }}"
        )
        self._label.setText(text)
        self.setVisible(True)
        if timeout_ms is None and kind == "info":
            timeout_ms = 6000
        if timeout_ms:
            self._timer.start(timeout_ms)
        else:
            self._timer.stop()

    def dismiss(self) -> None:
        self._timer.stop()
        self.kind = ""
        self.setVisible(False)


def swatch_icon(color: str, size: int = 12) -> QIcon:
    """A small rounded square of ``color`` for lists and legends."""
    pix = QPixmap(size, size)
    pix.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pix)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(color))
    painter.drawRoundedRect(1, 1, size - 2, size - 2, 2, 2)
    painter.end()
    return QIcon(pix)
