"""Shared plumbing for benchmark scripts: machine description and RESULTS.md sections.

Every benchmark owns one section of ``benchmarks/RESULTS.md`` (delimited by HTML comments),
so scripts can be rerun independently without clobbering each other's tables.
"""

from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import sys

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")


def machine_description() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    parts = [f"{os.cpu_count()} CPU cores ({cpu})", f"torch {torch.__version__}"]
    if torch.cuda.is_available():
        parts.insert(0, torch.cuda.get_device_name(0))
    else:
        parts.insert(0, "no GPU")
    return ", ".join(parts)


def markdown_table(header: list[str], rows: list[list]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, title: str, body: str) -> None:
    """Replace (or append) the section ``name`` of RESULTS.md with ``body``."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    block = (
        f"<!-- begin {name} -->\n## {title}\n\n"
        f"Machine: {machine_description()}  \nDate: {stamp}  \nCommand: `{command}`\n\n"
        f"{body.strip()}\n<!-- end {name} -->"
    )
    text = open(RESULTS).read() if os.path.exists(RESULTS) else "# Benchmark results\n\nEach section is written by the script named in its command line.\n"
    pattern = re.compile(rf"<!-- begin {re.escape(name)} -->.*?<!-- end {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    tmp = RESULTS + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, RESULTS)
