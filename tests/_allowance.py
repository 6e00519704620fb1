"""Monte Carlo allowances of the statistical tests (imported as a plain module).

A statistical test runs a procedure on a few seeded data sets and compares a
rate or an average with its nominal level. Even a procedure exactly at the
nominal level scatters around it, so "average <= level" fails about half the
time for such a procedure. Each test therefore allows the Monte Carlo error
of its number of seeds:

- an **allowance** is the largest value that a procedure exactly at the
  nominal level reaches with probability at least ``1 - ALPHA`` (99 %), so
  that an honest procedure passes with high probability; and
- a **power** is the probability that a clearly liberal procedure (twice
  the nominal level) exceeds the allowance and fails.

With binary outcomes per seed (a complete-null run "makes a call" or not)
the count is binomial and both numbers are exact. With a continuous outcome
per seed (a false-discovery proportion) the allowance is a one-sided t bound
on the seeds' mean, whose standard error is read from the seeds themselves
(the seeds are independent; the cells or genes within a seed are not).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

# A procedure exactly at the nominal level fails a test with probability <= ALPHA.
ALPHA = 0.01


def binomial_allowance(n_runs: int, rate: float, alpha: float = ALPHA) -> int:
    """Most events in ``n_runs`` independent runs at event probability ``rate``, at 1 - alpha.

    The smallest ``k`` with ``P(Binomial(n_runs, rate) <= k) >= 1 - alpha``:
    a procedure whose event rate is exactly ``rate`` (or lower) exceeds ``k``
    with probability at most ``alpha``.
    """
    return int(stats.binom.ppf(1.0 - alpha, n_runs, rate))


def binomial_power(n_runs: int, allowed: int, rate: float) -> float:
    """Probability that more than ``allowed`` of ``n_runs`` runs have the event at ``rate``."""
    return float(stats.binom.sf(allowed, n_runs, rate))


def mean_allowance(values, level: float, alpha: float = ALPHA) -> float:
    """Upper bound on the mean of per-seed ``values`` whose expectation is at most ``level``.

    ``level + t(1 - alpha, n - 1) * sd / sqrt(n)``: a one-sided t bound with
    the standard error estimated from the ``n`` seeds. When every seed gives
    the same value the bound is ``level`` itself.
    """
    values = np.asarray(values, np.float64)
    n = values.size
    sem = float(np.std(values, ddof=1)) / math.sqrt(n)
    return level + float(stats.t.ppf(1.0 - alpha, n - 1)) * sem


def mean_power(values, level: float, liberal: float, alpha: float = ALPHA) -> float:
    """Probability that :func:`mean_allowance` rejects a procedure whose mean is ``liberal``.

    For a procedure with the same seed-to-seed spread as ``values`` but mean
    ``liberal`` (e.g. twice the nominal ``level``): the power of the
    one-sided t test, from the noncentral t distribution. 1 when the seeds
    show no spread at all.
    """
    values = np.asarray(values, np.float64)
    n = values.size
    sd = float(np.std(values, ddof=1))
    if sd == 0.0:
        return 1.0
    shift = (liberal - level) * math.sqrt(n) / sd
    return float(stats.nct.sf(stats.t.ppf(1.0 - alpha, n - 1), n - 1, shift))
