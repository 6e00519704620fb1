"""Process measurements shared by the benchmark children (ours and the peer's side)."""

import resource


def peak_rss_gb() -> float:
    """Peak resident memory of this process since it started (exec), in GB.

    ``ru_maxrss`` would also count the parent's memory at the fork that started
    us (Linux keeps that high-water mark across exec); ``VmHWM`` does not.
    """
    try:
        with open("/proc/self/status") as fh:
            kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024**2
