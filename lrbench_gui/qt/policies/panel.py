"""The Policies panel: pick a policy or compose a sequence, tune it, and watch the LR curve.

The left column is the editor: a mode switch (one policy, or a sequence of segments: the
:class:`~lrbench_gui.qt.policies.sequence.SegmentEditor`), the
:class:`~lrbench_gui.qt.policies.picker.PolicyPicker` grouped by family, and the parameter form
generated from the policy's schema. The right side is the
:class:`~lrbench_gui.qt.policies.curve_view.CurveView` (LR against step, redrawn as the user
types, optional log scale, a hover readout), the
:class:`~lrbench_gui.qt.policies.overlay.OverlayBox` of pinned curves, and the
:class:`~lrbench_gui.qt.policies.spec_box.SpecBox` with the spec JSON, Open and Save.

The editor always edits one *target*: the single policy, or the selected segment of the sequence.
The curve is recomputed from the whole spec through :func:`~lrbench_gui.core.spec.parse_spec`, so
what is drawn is exactly what a saved spec reproduces. Invalid parameters leave the last valid
curve on screen and show the problems under the form.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np
from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from lrbench_gui.core.registry import Registry
from lrbench_gui.core.spec import PolicySpec, Schedule, SequenceSpec, SpecError, parse_spec
from lrbench_gui.qt.policies.curve_view import MAX_POINTS, CurveView, sample_steps
from lrbench_gui.qt.policies.editor import PolicyEditor, carry_params, default_params
from lrbench_gui.qt.policies.overlay import OverlayBox, overlay_label, unique_label
from lrbench_gui.qt.policies.sequence import MAX_TOTAL_STEPS, Segment, flatten
from lrbench_gui.qt.policies.spec_box import SpecBox
from lrbench_gui.qt.widgets import MessageBanner

__all__ = ["PolicyPanel"]


def _switches(spec: Any) -> bool:
    """Whether a sequence or one nested in it has a plateau switch."""
    return isinstance(spec, SequenceSpec) and (spec.switch is not None or any(_switches(s) for s in spec.segments))


class PolicyPanel(QWidget):
    """The Policies panel; see the module docstring."""

    #: Fires after the current curve was recomputed and redrawn; carries the spec JSON drawn.
    curveChanged = Signal(dict)
    #: Fires when a user action completed (spec saved or opened); carries one line for a status bar.
    statusMessage = Signal(str)

    def __init__(self, registry: Registry, parent: QWidget | None = None, *,
                 settings: QSettings | None = None) -> None:
        super().__init__(parent)
        self._registry = registry
        self._settings = settings
        self._mode = "single"
        self._single_name: str | None = None
        self._single_params: dict[str, Any] = {}
        self._single_total = 1000
        self._syncing = False
        self._spec: dict[str, Any] | None = None
        self._label = ""
        self._x = np.zeros(0)
        self._y = np.zeros(0)
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(20)
        self._redraw_timer.timeout.connect(self.redraw)

        root = QVBoxLayout(self)
        root.setContentsMargins(8, 8, 8, 8)
        root.setSpacing(6)
        self.banner = MessageBanner(self)
        root.addWidget(self.banner)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.setChildrenCollapsible(False)
        root.addWidget(splitter, 1)
        self.editor = PolicyEditor(self)
        self.mode_bar, self.sequence, self.picker = self.editor.mode_bar, self.editor.sequence, self.editor.picker
        self.form, self.params_box, self.curve_error = self.editor.form, self.editor.params_box, self.editor.curve_error
        self.mode_bar.currentChanged.connect(lambda i: self.set_mode("sequence" if i == 1 else "single"))
        self.sequence.addRequested.connect(lambda: self.add_segment())
        self.sequence.segmentSelected.connect(lambda _i: self._load_target())
        self.sequence.segmentsChanged.connect(self._segments_changed)
        self.sequence.switch_box.switchChanged.connect(self.request_redraw)
        self.picker.policyPicked.connect(self._policy_picked)
        self.form.paramsChanged.connect(self._params_changed)
        self.form.paramsRejected.connect(lambda _text: self._update_title())
        splitter.addWidget(self.editor)
        splitter.addWidget(self._build_view())
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([400, 900])
        self.splitter = splitter
        self.set_registry(registry)

    # construction

    def _build_view(self) -> QWidget:
        view = QWidget(self)
        layout = QVBoxLayout(view)
        layout.setContentsMargins(4, 0, 0, 0)
        layout.setSpacing(6)

        bar = QHBoxLayout()
        self.curve_title = QLabel(view)
        self.curve_title.setTextFormat(Qt.TextFormat.RichText)
        self.curve_title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        bar.addWidget(self.curve_title, 1)
        bar.addWidget(QLabel("Run length", view))
        self.total_steps_spin = QSpinBox(view)
        self.total_steps_spin.setRange(1, MAX_TOTAL_STEPS)
        self.total_steps_spin.setSingleStep(100)
        self.total_steps_spin.setSuffix(" steps")
        self.total_steps_spin.setGroupSeparatorShown(True)
        self.total_steps_spin.setAccelerated(True)
        self.total_steps_spin.setValue(self._single_total)
        self.total_steps_spin.setToolTip("Total optimizer steps of the run (policies like cosine depend on it)")
        self.total_steps_spin.valueChanged.connect(self._total_changed)
        bar.addWidget(self.total_steps_spin)
        self.log_check = QCheckBox("Log scale", view)
        self.log_check.setToolTip("Show the learning rate on a logarithmic axis")
        self.log_check.toggled.connect(self.set_log_scale)
        bar.addWidget(self.log_check)
        self.pin_button = QPushButton("Add to overlay", view)
        self.pin_button.setToolTip("Pin the current curve so that the next one is drawn over it")
        self.pin_button.clicked.connect(lambda: self.pin_current())
        bar.addWidget(self.pin_button)
        layout.addLayout(bar)

        vsplit = QSplitter(Qt.Orientation.Vertical, view)
        vsplit.setChildrenCollapsible(False)
        layout.addWidget(vsplit, 1)
        self.curve = CurveView(vsplit)
        self.curve.logToggled.connect(self._log_toggled_from_menu)
        self.curve.againstChanged.connect(self.request_redraw)
        bottom = QSplitter(Qt.Orientation.Horizontal, vsplit)
        bottom.setChildrenCollapsible(False)
        self.overlay = OverlayBox(self.curve.plot_item, bottom)
        self.overlay.overlaysChanged.connect(self._rebuild_legend)
        self.overlay.editRequested.connect(self.load_overlay)
        self.curve.curves = lambda: [(o.label, o.x, o.y, o.color) for o in self.overlay.items]
        self.spec_box = SpecBox(self.load_spec, self.banner, self._settings, bottom)
        self.spec_box.statusMessage.connect(self.statusMessage)
        bottom.addWidget(self.overlay)
        bottom.addWidget(self.spec_box)
        bottom.setSizes([420, 480])
        vsplit.addWidget(self.curve)
        vsplit.addWidget(bottom)
        vsplit.setStretchFactor(0, 3)
        vsplit.setStretchFactor(1, 1)
        vsplit.setSizes([560, 230])
        return view

    # registry

    @property
    def registry(self) -> Registry:
        return self._registry

    def set_registry(self, registry: Registry) -> None:
        """Use ``registry`` (after a plugin reload): rebuild the picker and redraw."""
        self._registry = registry
        self._syncing = True
        try:
            self.picker.set_registry(registry)
        finally:
            self._syncing = False
        names = self.picker.names()
        if self._single_name not in registry.policies:
            if self._single_name is not None:
                self.banner.show_message(
                    f"Policy {self._single_name!r} is no longer registered; showing another one.", "warning"
                )
            self._single_name = "cosine" if "cosine" in names else (names[0] if names else None)
            self._single_params = default_params(registry, self._single_name) if self._single_name else {}
        self._load_target()
        self.request_redraw()

    # what is being edited

    def mode(self) -> str:
        """``"single"`` or ``"sequence"``."""
        return self._mode

    def _target(self) -> tuple[str | None, dict[str, Any]]:
        seg = self.sequence.current() if self._mode == "sequence" else None
        if seg is not None:
            return seg.name, seg.params
        return self._single_name, self._single_params

    def _set_target(self, name: str, params: dict[str, Any]) -> None:
        seg = self.sequence.current() if self._mode == "sequence" else None
        if seg is not None:
            seg.name, seg.params = name, params
            self.sequence.refresh()
        else:
            self._single_name, self._single_params = name, params

    def _load_target(self) -> None:
        """Show the target's policy in the picker and its parameters in the form."""
        name, params = self._target()
        self._syncing = True
        try:
            if name is not None:
                self.picker.select(name, emit=False)
            model = self._registry.policy(name).Params if name in self._registry.policies else None
            self.form.set_schema(model, params)
        finally:
            self._syncing = False
        self.editor.show_policy_info(self._registry, name)
        in_sequence = self._mode == "sequence"
        self.params_box.setTitle(f"Parameters · segment {self.sequence.index + 1}" if in_sequence else "Parameters")

    def select_policy(self, name: str) -> bool:
        """Edit policy ``name`` (for the single policy or the selected segment)."""
        return self.picker.select(name)

    def _policy_picked(self, name: str) -> None:
        if self._syncing:
            return
        old_name, old_params = self._target()
        if name == old_name:
            return
        self._set_target(name, carry_params(self._registry, name, old_name, old_params))
        self._load_target()
        self.request_redraw()

    def _params_changed(self, values: dict[str, Any]) -> None:
        name, _ = self._target()
        if name is None:
            return
        self._set_target(name, values)
        self.request_redraw()

    def _total_changed(self, value: int) -> None:
        if self._mode == "single":
            self._single_total = int(value)
            self.request_redraw()

    def total_steps(self) -> int:
        """The previewed run's length: the spin box, or the sum of the segments."""
        if self._mode == "sequence" and self.sequence.segments:
            return self.sequence.total_steps()
        return self._single_total

    def set_total_steps(self, steps: int) -> None:
        """Set the single policy's run length (the sequence's comes from its segments)."""
        self._single_total = max(1, int(steps))
        if self._mode == "single":
            self.total_steps_spin.setValue(self._single_total)
        self.request_redraw()

    # mode and segments

    def set_mode(self, mode: str) -> None:
        """Edit one policy (``"single"``) or a sequence of segments (``"sequence"``)."""
        if mode not in ("single", "sequence"):
            raise ValueError(f"mode must be 'single' or 'sequence', got {mode!r}")
        if self.mode_bar.currentIndex() != (mode == "sequence"):
            self.mode_bar.blockSignals(True)
            self.mode_bar.setCurrentIndex(1 if mode == "sequence" else 0)
            self.mode_bar.blockSignals(False)
        if mode == self._mode:
            return
        self._mode = mode
        if mode == "sequence" and not self.sequence.segments and self._single_name is not None:
            self.sequence.set_segments([Segment(self._single_name, dict(self._single_params), self._single_total)])
        self.sequence.setVisible(mode == "sequence")
        self.sequence.refresh()
        self._sync_total_spin()
        self._load_target()
        self.request_redraw()

    def segments(self) -> list[Segment]:
        return [Segment(s.name, dict(s.params), s.steps) for s in self.sequence.segments]

    def set_segments(self, segments: list[Segment], selected: int = 0) -> None:
        """Replace the sequence (and switch to sequence mode)."""
        self.sequence.set_segments(segments, selected)
        if self._mode != "sequence":
            self.set_mode("sequence")
        else:
            self._segments_changed()
            self._load_target()

    def add_segment(self, name: str | None = None, steps: int | None = None, params: dict | None = None) -> int:
        """Append a segment (a copy of the selected one unless ``name`` is given); returns its index."""
        if self._mode != "sequence":
            self.set_mode("sequence")
        base = self.sequence.current()
        if name is None:
            name = base.name if base is not None else self._single_name
            if name is None:
                return -1
        if params is None:
            params = dict(base.params) if base is not None and base.name == name else default_params(self._registry, name)
        if steps is None:
            steps = base.steps if base is not None else self._single_total
        index = self.sequence.append(Segment(name, dict(params), int(steps)))
        self._load_target()
        return index

    def select_segment(self, index: int) -> None:
        if self.sequence.select(index):
            self._load_target()

    def set_segment_length(self, steps: int) -> None:
        """Set the selected segment's length."""
        self.sequence.length.setValue(int(steps))

    def _segments_changed(self) -> None:
        self._sync_total_spin()
        self.request_redraw()

    def _sync_total_spin(self) -> None:
        sequence = self._mode == "sequence"
        self.total_steps_spin.blockSignals(True)
        self.total_steps_spin.setValue(min(self.total_steps(), MAX_TOTAL_STEPS))
        self.total_steps_spin.blockSignals(False)
        self.total_steps_spin.setEnabled(not sequence)
        self.total_steps_spin.setToolTip(
            "The sum of the segments' lengths (set each segment's length on the left)"
            if sequence
            else "Total optimizer steps of the run (policies like cosine depend on it)"
        )

    # the curve

    def spec_draft(self) -> dict[str, Any] | None:
        """The spec the editor describes now (not yet validated); None with no policy."""
        if self._mode == "sequence" and self.sequence.segments:
            switch = self.sequence.switch_box.switch()
            return {
                "sequence": [{"name": s.name, "params": dict(s.params)} for s in self.sequence.segments],
                "boundaries": self.sequence.boundaries(),
                **({"switch": switch} if switch is not None else {}),
            }
        if self._single_name is None:
            return None
        return {"name": self._single_name, "params": dict(self._single_params)}

    def current_spec(self) -> dict[str, Any] | None:
        """The spec of the curve on screen (validated, every parameter written out)."""
        return None if self._spec is None else json.loads(json.dumps(self._spec))

    def current_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """The (steps, learning rates) of the curve on screen."""
        return self._x.copy(), self._y.copy()

    def request_redraw(self) -> None:
        """Recompute the curve soon (changes within ~20 ms make one redraw)."""
        self._redraw_timer.start()

    def redraw(self) -> None:
        """Recompute and draw the current curve now. On a bad spec, keep the last curve."""
        self._redraw_timer.stop()
        draft = self.spec_draft()
        if draft is None:
            self._set_curve_error("No policy is registered: see the Plugins panel.")
            return
        total = self.total_steps()
        try:
            spec = parse_spec(draft, self._registry)
            schedule = Schedule(spec, total, self._registry)
            x = sample_steps(total)
            y = self.curve.sample(schedule, x)  # a reactive policy: fed the loss curve picked under the plot
        except SpecError as exc:
            self._set_curve_error(str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a third-party policy may raise anything
            self._set_curve_error(f"the policy failed: {type(exc).__name__}: {exc}")
            return
        if not np.all(np.isfinite(y)):
            bad = int(x[~np.isfinite(y)][0])
            self._set_curve_error(f"the policy returned a non-finite learning rate at step {bad}")
            return
        self._set_curve_error("")
        self._spec = spec.to_json()
        self._label = overlay_label(self._spec, self._registry)  # with what it changed from the defaults
        self._x, self._y = x, y
        self.curve.set_curve(x, y, spec)
        self._rebuild_legend()
        self.spec_box.show_spec(self._spec, self._label)
        self._update_title()
        self.curveChanged.emit(self.current_spec())

    def _set_curve_error(self, text: str) -> None:
        self.curve_error.setText(text)
        self.curve_error.setVisible(bool(text))
        self._update_title()

    def _update_title(self) -> None:
        stale = bool(self.curve_error.text()) or not self.form.is_valid()
        total = self.total_steps()
        stride = max(1, math.ceil(total / MAX_POINTS))
        parts = [f"<b>{self._label or '—'}</b>", f"<span style='color:#6b7280'>{total:,} steps"]
        if stride > 1:
            parts[-1] += f", every {stride}th step drawn"
        parts[-1] += "</span>"
        if stale:
            parts.append("<span style='color:#b45309'>⚠ last valid curve</span>")
        self.curve_title.setText(" &nbsp; ".join(parts))

    def _rebuild_legend(self) -> None:
        self.curve.rebuild_legend(self._label if self._spec is not None else None,
                                  [(o.item, o.label) for o in self.overlay.items])

    def set_log_scale(self, on: bool) -> None:
        """Show the LR axis on a log scale (zeros are left out of a log plot)."""
        if self.log_check.isChecked() != on:
            self.log_check.setChecked(on)
            return
        self.curve.set_log_scale(on)

    def is_log_scale(self) -> bool:
        return self.curve.is_log_scale()

    def _log_toggled_from_menu(self, on: bool) -> None:
        self.log_check.blockSignals(True)
        self.log_check.setChecked(on)
        self.log_check.blockSignals(False)

    def show_readout(self, step: float) -> None:
        """Put the crosshair at ``step`` and show the LR of every drawn curve there."""
        self.curve.show_readout(step)

    # overlay

    def overlays(self) -> list[dict[str, Any]]:
        """The pinned curves: label, spec, total_steps and color of each."""
        return [{"label": o.label, "spec": o.spec, "total_steps": o.total_steps, "color": o.color}
                for o in self.overlay.items]

    def pin_current(self) -> int:
        """Pin the current curve onto the plot; returns its overlay index (-1 with no curve)."""
        if self._spec is None or len(self._x) == 0:
            return -1
        label = unique_label(self._label, self._spec, self.total_steps(), self.overlay.labels(), self._registry)
        return self.overlay.add(label, self.current_spec(), self.total_steps(), self._x, self._y)

    def clear_overlays(self) -> None:
        self.overlay.clear()

    def load_overlay(self, index: int) -> None:
        """Put a pinned curve's spec and run length back into the editor."""
        if 0 <= index < len(self.overlay.items):
            ov = self.overlay.items[index]
            self.load_spec(ov.spec, total_steps=ov.total_steps)

    # specs: load, open, save

    def load_spec(self, obj: Any, *, total_steps: int | None = None) -> None:
        """Edit the spec ``obj`` (a dict or JSON text). Raises :class:`SpecError` and changes
        nothing when it is invalid."""
        spec = parse_spec(obj, self._registry)
        if isinstance(spec, PolicySpec):
            self._single_name = spec.name
            self._single_params = spec.params.model_dump(mode="json")
            if total_steps is not None:
                self._single_total = max(1, int(total_steps))
            if self._mode != "single":
                self.set_mode("single")
            self._sync_total_spin()
            self._load_target()
            self.request_redraw()
            return
        # the run: the length asked for, else the single policy's, else a last segment as long
        # as the average of the others
        if spec.in_shares:  # boundaries as shares of the run: laid out over the run asked for
            last = spec.steps(int(total_steps) if total_steps is not None else self._single_total)[-1]
        else:
            last = int(spec.boundaries[-1])
        fallback = self._single_total if self._single_total > last else last + max(1, last // len(spec.boundaries))
        self.sequence.switch_box.set_switch(None if spec.switch is None else spec.switch.model_dump(mode="json"))
        self.set_segments(flatten(spec, int(total_steps) if total_steps is not None and total_steps > last else fallback))
        nested = [s for s in spec.segments if isinstance(s, SequenceSpec)]
        if nested and (spec.switch is not None or any(_switches(s) for s in nested)):
            self.banner.show_message("The spec nests sequences and switches on a plateau: it is shown flattened, "
                                     "a nested sequence's switch is dropped and the top one moves between the "
                                     "flattened segments (edit the file to keep the nesting).", "warning")
        elif nested:
            self.banner.show_message("The spec nests sequences: it is shown flattened into one sequence.", "info")

    def open_spec_file(self, path: str | os.PathLike[str]) -> bool:
        """Load a spec from a JSON file. A bad file shows a message and changes nothing."""
        return self.spec_box.open_file(path)

    def save_spec_file(self, path: str | os.PathLike[str]) -> bool:
        """Write the current spec as JSON, atomically (a temporary file, then a rename)."""
        return self.spec_box.save_file(path)

    def copy_spec(self) -> None:
        self.spec_box.copy()

    def open_spec_dialog(self) -> None:
        """Ask for a spec file and open it."""
        self.spec_box.open_dialog()

    def save_spec_dialog(self) -> None:
        """Ask where to save the current spec and save it."""
        self.spec_box.save_dialog()
