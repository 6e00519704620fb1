"""The one place that splits work into cell or gene blocks."""

from __future__ import annotations

from collections.abc import Iterator

from tqdm.auto import tqdm


def block_slices(n: int, size: int | None, *, progress: bool = False, desc: str = "") -> Iterator[slice]:
    """Consecutive slices of at most ``size`` items covering ``range(n)``."""
    size = n if not size or size <= 0 else int(size)
    starts = range(0, n, size)
    if progress and len(starts) > 1:
        starts = tqdm(starts, desc=desc, leave=False)
    for start in starts:
        yield slice(start, min(start + size, n))
