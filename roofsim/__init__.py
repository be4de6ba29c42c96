"""The ``roofsim`` command line: it sits above ``simulator`` and ``validation`` and imports both, so that
neither of them imports the other's commands. ``python -m roofsim`` is the same as ``roofsim``."""
