"""``python -m ductwork``: the ``ductwork`` command (see :mod:`ductwork.cli`)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
