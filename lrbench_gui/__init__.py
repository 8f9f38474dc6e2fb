"""lrbench-gui: a desktop workbench for choosing and tuning learning-rate policies."""

__version__ = "0.1.0"
__all__ = ["__version__"]
