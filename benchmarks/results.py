"""What every benchmark shares: the machine's CPU name and writing its section of RESULTS.md."""
from __future__ import annotations

import platform
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def write_section(section: str) -> Path:
    """Put ``section`` (starting with its "## " heading) into RESULTS.md in place of the old one, or at the end."""
    heading = section.splitlines()[0]
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    # the old section runs from its heading up to the next "## " heading
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    section = section.rstrip("\n") + "\n\n"
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text.rstrip("\n") + "\n")
    return RESULTS
