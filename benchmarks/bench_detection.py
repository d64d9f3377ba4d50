"""Detection on the built-in synthetic parts: bundled teacher against a random teacher.

AU-PRO@0.3, AU-PRO@0.05 and cloud AUROC per part type with fit and scoring times, written to
the "detection" section of benchmarks/RESULTS.md. The same evaluation as bench_quality.py
(which adds the classical baseline and the real-geometry parts), run on fewer methods.

    python benchmarks/bench_detection.py [--epochs 100] [--quick]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_quality import main as quality_main  # noqa: E402

if __name__ == "__main__":
    quality_main(["--methods", "pretrained,random", "--datasets", "synthetic", "--section", "detection", *sys.argv[1:]])
