"""kompot's warning category, and the warning for parameters that have no effect."""

from __future__ import annotations

import warnings


class KompotWarning(UserWarning):
    """A warning issued by kompot (filter it with ``warnings.filterwarnings``).

    Every warning kompot issues is of this class or a subclass, so that
    ``warnings.filterwarnings("ignore", category=kompot.KompotWarning)``
    silences all of them.
    """


class KompotRuntimeWarning(KompotWarning, RuntimeWarning):
    """A numerical problem kompot worked around (jitter, no convergence, a fallback)."""


class KompotInputWarning(KompotWarning):
    """Input that kompot accepted but that looks unlike what it expects."""


def warn_inert_parameters(owner: str, given: dict[str, object], defaults: dict[str, object]) -> None:
    """Warn once if any parameter in ``given`` differs from its default in ``defaults``.

    For constructor parameters kept only so that code written for kompot 0.8.0
    still runs: kompot keeps landmark-sized factors in memory and needs no JIT,
    disk storage or dask workers, so these values change nothing.
    """
    changed = [f"{name}={value!r}" for name, value in given.items() if value != defaults[name]]
    if changed:
        warnings.warn(
            f"{owner}: {', '.join(changed)} has no effect in this version of kompot (kept for "
            "compatibility with kompot 0.8.0); leave it at its default to silence this warning.",
            KompotWarning,
            stacklevel=3,
        )
