"""Writing a benchmark's section of ``benchmarks/RESULTS.md``."""

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(title: str, text: str, results: Path = RESULTS) -> None:
    """Replace the section ``title`` (its heading to the next '## ' heading), or append it.

    The file is read right before writing, so that sections written by other
    benchmarks in the meantime are kept.
    """
    cur = results.read_text() if results.exists() else "# Benchmark results\n"
    lines = cur.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.strip() == title), None)
    if start is None:
        new = cur.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + text.rstrip("\n") + "\n" + ("\n" + tail if tail else "")
    results.write_text(new)
