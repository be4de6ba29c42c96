"""Command-line interface: each sub-command lives in its own module."""
