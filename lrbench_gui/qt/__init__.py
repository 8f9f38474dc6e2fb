"""The Qt user interface. Importing this package loads no Qt: import the modules you need
(``lrbench_gui.qt.main_window.MainWindow``, ``lrbench_gui.qt.app.main``)."""

__all__: list[str] = []
