"""Regenerate ``benchmarks/RESULTS.md``: a page a user reads in a minute.

The page holds, in this order, the sections of :data:`PAGE`; each is written by its own script
(named in its command line, with machine and date) and this script only puts them together:

* ``quality``: the summary table (method x split: AU-PRO@0.3, @0.05, cloud AUROC, fit and score
  seconds) and the per-case tables, from ``bench_quality.py``'s result cache;
* ``verdicts`` (and ``verdicts_3d_st`` for 3D-ST alone, when run): the cloud score and
  threshold chosen on dev, reported on test (``bench_verdicts.py``);
* ``workflow``: ``skst3d fit`` / ``skst3d score`` on scan files: cloud AUROC, verdicts, defect
  centroids;
* ``scaling``: time and memory against scan size, n, d and k (CPU; GPU rows when a GPU run
  brought them back);
* ``normalization``: location normalisation by per-point search against the lookup at
  training points (quality on both splits, score time);
* ``geometry``: the kNN, Chamfer and sampling kernels;
* ``gpu``: the last GPU run of ``gpu_check.py`` (when there was one).

Sections not in :data:`PAGE` (earlier experiments) are dropped; they stay in git history.

    python benchmarks/make_results.py              # rebuild the page from the existing sections
    python benchmarks/make_results.py --run        # rerun the benchmarks first (hours on 2 cores)
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _results import RESULTS  # noqa: E402

#: (section name, script that writes it, arguments of a full run)
PAGE = [
    ("quality", "bench_quality.py", ["--split", "both", "--methods", "default,random-teacher,fpfh,btf-open3d"]),
    ("verdicts", "bench_verdicts.py", []),
    ("verdicts_3d_st", "bench_verdicts.py", ["--method", "3d-st"]),
    ("workflow", "bench_workflow.py", []),
    ("scaling", "bench_scaling.py", []),
    ("normalization", "bench_normalization.py", ["--split", "both"]),
    ("geometry", "bench_geometry.py", []),
    ("gpu", "gpu_check.py", None),  # written from a GPU run's output, never rerun here
]

HEADER = """# Benchmark results

How good and how fast skst3d is, measured by the scripts in `benchmarks/` (each section names
its command, machine and date). Quality first: every method, default and hyper-parameter was
chosen on the **dev** split of `benchmarks/protocol.py` and is reported on its **test** split,
whose parts no choice ever looked at. `python benchmarks/make_results.py` rebuilds this page;
earlier experiments are in git history.
"""

_SECTION = re.compile(r"<!-- begin (\S+) -->.*?<!-- end \1 -->", re.S)


def sections(text):
    """Section name -> its whole block, as ``_results.write_section`` wrote it."""
    return {m.group(1): m.group(0) for m in _SECTION.finditer(text)}


def assemble(text):
    """The page: the header, then the sections of PAGE that exist, in order."""
    found = sections(text)
    blocks = [found[name] for name, _, _ in PAGE if name in found]
    return HEADER + "\n" + "\n\n".join(blocks) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="store_true", help="rerun every benchmark of the page first")
    args = parser.parse_args(argv)
    if args.run:
        for name, script, script_args in PAGE:
            if script_args is None or not os.path.exists(os.path.join(HERE, script)):
                continue
            print(f"== {script} {' '.join(script_args)}", flush=True)
            subprocess.run([sys.executable, os.path.join(HERE, script), *script_args], check=True)
    text = open(RESULTS).read() if os.path.exists(RESULTS) else ""
    page = assemble(text)
    tmp = RESULTS + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(page)
    os.replace(tmp, RESULTS)
    kept = [name for name, _, _ in PAGE if name in sections(text)]
    print(f"wrote {RESULTS}: sections {', '.join(kept) or 'none'}")


if __name__ == "__main__":
    main()
