"""``python -m lmprog.cli``: the ``lmprog`` command line."""

from lmprog.cli._app import main

main()
