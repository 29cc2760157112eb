"""The ``syndicator`` command: Django's management CLI with syndicator's own commands."""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    """Run a management command (``syndicator help`` lists them)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syndicator.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["syndicator", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
