"""``kompot.settings``: how much kompot reports, and where it computes.

Verbosity levels are scanpy's: 0 ``"error"``, 1 ``"warning"``, 2 ``"info"``, 3
``"hint"``, 4 ``"debug"``. Until a level is set, kompot follows
``scanpy.settings.verbosity`` when scanpy has been imported, and uses 1
(``"warning"``, scanpy's default) otherwise. ``dask_client`` names a Dask
cluster that differential expression runs its gene blocks on (see
:mod:`kompot.parallel`). Importing this module imports nothing else and
configures no logging.
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


def checked_client(value, name: str = "dask_client"):
    """``value`` if it can name a Dask cluster (``None``, an address, a client), else raise.

    Checked by its methods, so that the check needs no import of distributed.
    """
    if value is None or isinstance(value, str):
        return value
    if all(callable(getattr(value, m, None)) for m in ("submit", "scatter", "gather")):
        return value
    raise TypeError(
        f"{name} must be None (compute in this process), a distributed.Client or a "
        f"scheduler address such as 'tcp://10.0.0.5:8786'; got {type(value).__name__}."
    )


class Settings:
    """kompot's settings; the one instance is ``kompot.settings``."""

    def __init__(self) -> None:
        self._verbosity: int | None = None
        self._dask_client = None

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

    @property
    def dask_client(self):
        """Where differential expression computes its gene blocks; ``None``: in this process.

        Set a ``distributed.Client`` or a scheduler address (a client is then
        connected for each run and closed after it). A ``client=`` argument of
        the analysis overrides this setting.
        """
        return self._dask_client

    @dask_client.setter
    def dask_client(self, value) -> None:
        self._dask_client = checked_client(value)

    def __repr__(self) -> str:
        client = "" if self._dask_client is None else f", dask_client={self._dask_client!r}"
        return (f"kompot.settings(verbosity={self.verbosity} "
                f"({LEVELS[self.verbosity]!r}){client})")

    # ------------------------------------------------------ compute backend
    _compute_backend = "numpy"

    @property
    def compute_backend(self) -> str:
        """Where the hot array products run: ``"numpy"`` (default) or ``"jax"``.

        ``"jax"`` computes kernel blocks, predictions at cells and the
        per-gene Mahalanobis solves with JAX in float64 on JAX's default
        device (a GPU when JAX has one); ``"jax:gpu"`` or ``"jax:cpu"`` name
        the platform. Setting it imports JAX and checks the device, but
        changes none of JAX's global configuration. Results equal numpy's to
        rounding; see :mod:`kompot.core.backend`.
        """
        return self._compute_backend

    @compute_backend.setter
    def compute_backend(self, value) -> None:
        from .core.backend import checked_backend

        self._compute_backend = checked_backend(value)


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
