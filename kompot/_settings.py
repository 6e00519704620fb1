"""``kompot.settings``: how much kompot reports, on scanpy's verbosity scale.

Levels are scanpy's: 0 ``"error"``, 1 ``"warning"``, 2 ``"info"``, 3
``"hint"``, 4 ``"debug"``. Until a level is set, kompot follows
``scanpy.settings.verbosity`` when scanpy has been imported, and uses 1
(``"warning"``, scanpy's default) otherwise. Importing this module imports
nothing else and configures no logging.
"""

from __future__ import annotations

import logging
import sys

LEVELS = ("error", "warning", "info", "hint", "debug")
DEFAULT_VERBOSITY = 1


def _as_level(value) -> int:
    """A verbosity as an integer 0-4, from an integer, a name or scanpy's Verbosity."""
    name = getattr(value, "name", value)  # scanpy's Verbosity enum
    if isinstance(name, str) and name.lower() in LEVELS:
        return LEVELS.index(name.lower())
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ValueError(
            f"verbosity must be an integer 0-4 or one of {LEVELS}, got {value!r}."
        )
    return min(max(int(value), 0), len(LEVELS) - 1)


class Settings:
    """kompot's settings; the one instance is ``kompot.settings``."""

    def __init__(self) -> None:
        self._verbosity: int | None = None

    @property
    def verbosity(self) -> int:
        """0 (errors only) to 4 (debug); kompot's "wrote ..." lines appear from 2 (``"info"``).

        Set an integer or a level name; set ``None`` to follow scanpy again.
        """
        if self._verbosity is not None:
            return self._verbosity
        scanpy = sys.modules.get("scanpy")
        if scanpy is not None:
            try:
                return _as_level(scanpy.settings.verbosity)
            except (AttributeError, ValueError):
                pass
        return DEFAULT_VERBOSITY

    @verbosity.setter
    def verbosity(self, value) -> None:
        self._verbosity = None if value is None else _as_level(value)

    def __repr__(self) -> str:
        return f"kompot.settings(verbosity={self.verbosity} ({LEVELS[self.verbosity]!r}))"


settings = Settings()


def report(logger: logging.Logger, message: str, *args, level: int = 2) -> None:
    """Report ``message`` when the verbosity is at least ``level`` (2: info).

    It goes through ``logger`` at the matching logging level; when logging is
    not set up to show it (no handler, or the logger's level above it), it is
    written to stderr instead, as scanpy prints its own messages.
    """
    if settings.verbosity < level:
        return
    logging_level = logging.INFO if level == 2 else logging.DEBUG if level > 2 else logging.WARNING
    if logger.hasHandlers() and logger.isEnabledFor(logging_level):
        logger.log(logging_level, message, *args)
    else:
        print(message % args if args else message, file=sys.stderr)


__all__ = ["LEVELS", "Settings", "report", "settings"]
