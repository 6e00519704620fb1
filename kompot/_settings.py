"""``kompot.settings``: how much kompot reports, and where it computes.

Verbosity levels are scanpy's: 0 ``"error"``, 1 ``"warning"``, 2 ``"info"``, 3
``"hint"``, 4 ``"debug"``. Until a level is set, kompot follows
``scanpy.settings.verbosity`` when scanpy has been imported, and uses 1
(``"warning"``, scanpy's default) otherwise. ``dask_client`` names a Dask
cluster that differential expression runs its gene blocks on (see
:mod:`kompot.parallel`). ``memory_budget``, ``layers_on_disk`` and
``layers_dir`` bound kompot's working memory and say where the cells x genes
layers of differential expression go when they do not fit in it (see
:mod:`kompot.models.layer_store`). ``precision`` sets the arithmetic of the
expression fits' empirical-variance passes (:mod:`kompot.core.precision`)
and ``compute_backend`` where the hot products run. Importing this module
imports nothing else and configures no logging.
"""

from __future__ import annotations

import logging
import os
import re
import sys

LEVELS = ("error", "warning", "info", "hint", "debug")
DEFAULT_VERBOSITY = 1
DEFAULT_MEMORY_BUDGET = 4 * 1024**3
# Below this a budget is surely a unit slip (memory_budget=8 meant 8 GB).
MIN_MEMORY_BUDGET = 2**10
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


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


def checked_budget(value) -> int:
    """A memory budget in bytes, from a number of bytes or a string such as ``"8GB"`` or ``"16GiB"``."""
    number = value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
        unit = match.group(2).lower() if match else None
        if unit not in _UNITS:
            raise ValueError(
                f"memory_budget {value!r} is not a size; give bytes (an integer) or a string "
                "such as '8GB' or '16GiB'."
            )
        number = float(match.group(1)) * _UNITS[unit]
    if isinstance(number, bool) or not isinstance(number, int | float) or not number > 0:
        raise ValueError(
            f"memory_budget must be a positive number of bytes or a string such as '8GB'; "
            f"got {value!r}."
        )
    if number < MIN_MEMORY_BUDGET:
        raise ValueError(
            f"memory_budget is in bytes: {value!r} is under 1 KiB. Give a size such as "
            f"'{value if not isinstance(value, str) else 8}GB', or a number of bytes."
        )
    return int(number)


def checked_layers_dir(value):
    """``value`` as a directory path string (or ``None``); raise if it names something else."""
    if value is None:
        return None
    if not isinstance(value, str | os.PathLike):
        raise TypeError(f"layers_dir must be None or a directory path, got {type(value).__name__}.")
    path = os.path.abspath(os.path.expanduser(os.fspath(value)))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"layers_dir {path!r} exists and is not a directory; name a directory.")
    return path


class Settings:
    """kompot's settings; the one instance is ``kompot.settings``."""

    def __init__(self) -> None:
        self._verbosity: int | None = None
        self._dask_client = None
        self._memory_budget = DEFAULT_MEMORY_BUDGET
        self._layers_on_disk = None
        self._layers_dir = None

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

    @property
    def memory_budget(self) -> int:
        """Working memory, in bytes, that a kompot run may use for its large arrays (default 4 GiB).

        Set bytes or a string such as ``"16GB"`` or ``"16GiB"``. Differential
        expression predicts cells in chunks sized from it, sizes its gene
        blocks on a Dask cluster from it (half of it per block, per worker),
        and keeps the cells x genes layers in memory only while they fit in
        it (see ``layers_on_disk``). It bounds what kompot allocates for
        these, not the process: the expression, the cell states and the
        fits come on top.
        """
        return self._memory_budget

    @memory_budget.setter
    def memory_budget(self, value) -> None:
        self._memory_budget = DEFAULT_MEMORY_BUDGET if value is None else checked_budget(value)

    @property
    def layers_on_disk(self) -> bool | None:
        """Whether differential expression writes its cells x genes layers to disk.

        ``None`` (the default): when the five float32 layers would take more
        than ``memory_budget``; ``True``: always; ``False``: never (in
        memory, whatever their size). On disk each layer is a zarr store
        under ``layers_dir``, and ``adata.layers`` holds dask arrays reading
        them (``pip install 'kompot[dask]'``).
        """
        return self._layers_on_disk

    @layers_on_disk.setter
    def layers_on_disk(self, value) -> None:
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"layers_on_disk must be None, True or False; got {value!r}.")
        self._layers_on_disk = value

    @property
    def layers_dir(self) -> str | None:
        """Directory under which layers on disk are written; ``None``: a temporary directory.

        Each run writes into a new subdirectory (named in kompot's report)
        and kompot never deletes anything here: the AnnData's layers read
        these files, so keep them as long as the AnnData, or write the
        AnnData (``write_h5ad``/``write_zarr`` copy the layers in). With
        ``None`` the layers go to a new directory in the system's
        temporary directory (``$TMPDIR``), removed when Python exits, and
        kompot warns naming it. On a cluster name a directory on a
        filesystem the workers share.
        """
        return self._layers_dir

    @layers_dir.setter
    def layers_dir(self, value) -> None:
        self._layers_dir = checked_layers_dir(value)

    def __repr__(self) -> str:
        client = "" if self._dask_client is None else f", dask_client={self._dask_client!r}"
        disk = "" if self._layers_on_disk is None else f", layers_on_disk={self._layers_on_disk}"
        where = "" if self._layers_dir is None else f", layers_dir={self._layers_dir!r}"
        precision = "" if self._precision == "auto" else f", precision={self._precision!r}"
        return (f"kompot.settings(verbosity={self.verbosity} "
                f"({LEVELS[self.verbosity]!r}){client}, memory_budget={self._memory_budget}"
                f"{disk}{where}{precision})")

    # ------------------------------------------------------------ precision
    _precision = "auto"

    @property
    def precision(self) -> str:
        """Arithmetic of the empirical-variance passes over cells: ``"auto"``, ``"double"``, ``"mixed"``.

        ``"mixed"`` computes those passes of the expression fits (each
        cell's squared residual, smoothed over the landmarks: most of
        differential expression's arithmetic on many cells) in float32 with
        numpy, about twice as fast, and sums them in float64. The means, the
        kernel factorisations and the distances stay in float64; results
        differ from ``"double"`` in about the sixth significant digit.
        Differential abundance (``method="ratio"``) keeps its whitened
        kernel in float32 when float64 would not fit its 2 GiB cache (a
        million cells), instead of computing it again on every pass; its
        arithmetic stays float64. ``"auto"`` (the default) is ``"mixed"``
        for runs on at least 50,000 cells, ``"double"`` otherwise
        (:mod:`kompot.core.precision`). The JAX backend computes in float64
        either way.
        """
        return self._precision

    @precision.setter
    def precision(self, value) -> None:
        if value not in ("auto", "double", "mixed"):
            raise ValueError(f"precision must be 'auto', 'double' or 'mixed'; got {value!r}.")
        self._precision = value

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
