"""The version of lmprog (one home: the package, prompt files, reports and traces read it here)."""

__version__ = "0.1.0"
