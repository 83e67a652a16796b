"""Implementation of :mod:`lmprog.source` (static analysis with libcst)."""
