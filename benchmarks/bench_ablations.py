"""The paper's training-strategy ablations (Figure 7, Table 4) beside a classical baseline.

Same run, same data: the built-in synthetic parts and the real-geometry set from the shared CAD
meshes. One detector per part type; AU-PRO@0.3 and @0.05 per part type. Variants:

* **pretrained (bundled)**: the bundled teacher, as a user gets it;
* **random teacher**: no pretraining (paper: 0.278 against 0.818 on MVTec 3D-AD);
* **pretrained, short** and **absolute coordinates, short**: two teachers pretrained by
  ``pretrain_teachers.py`` with the same budget (``--teacher-minutes``, same scenes, seed and
  steps per minute being similar), the second with RandLA-Net's ``G ⊕ p ⊕ p_j``. Matching the
  budget isolates the encoding; the bundled teacher had a longer one. Paper: translation
  invariance helps;
* **rotation augmentation (uniform)**: the student trained on uniformly rotated clouds, so
  locally rotated geometry counts as normal (paper: hurts);
* **pose augmentation (30°)**: rotations of at most 30 degrees, a range like the pose
  variation of the real-geometry scans (not in the paper);
* **FPFH memory bank**: hand-crafted local features and a nearest-neighbour memory bank (BTF).

The two short teachers are cached in ``benchmarks/cache/`` (git-ignored) and pretrained on first
use. The section "ablations" of benchmarks/RESULTS.md is written at the end.

    python benchmarks/bench_ablations.py                 # full (about an hour on 2 CPU cores)
    python benchmarks/bench_ablations.py --quick         # smoke run, no pretraining
"""

from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _evaluate import build_datasets, evaluate, evaluation_arguments, quality_tables  # noqa: E402
from _results import markdown_table, write_section  # noqa: E402

from skst3d import StudentTeacherDetector, TeacherPretrainer  # noqa: E402
from skst3d.baseline import FPFHMemoryBankDetector  # noqa: E402

CACHE = os.path.join(HERE, "cache")
SHORT_TEACHERS = {"pretrained, short": False, "absolute coordinates, short": True}


def short_teacher(absolute, minutes, threads):
    """A teacher pretrained for ``minutes`` by pretrain_teachers.py (cached on disk)."""
    import pretrain_teachers

    name = f"teacher_short{'_absolute' if absolute else ''}_d64.pt"
    path = os.path.join(CACHE, name)
    if not os.path.exists(path):
        os.makedirs(CACHE, exist_ok=True)
        argv = ["--d", "64", "--n-blocks", "2", "--scenes", "60", "--points", "8192", "--minutes", str(minutes),
                "--chunk-epochs", "2", "--threads", str(threads), "--output", path]
        pretrain_teachers.main(argv + (["--absolute-coordinates"] if absolute else []))
    return TeacherPretrainer.load(path)


def variants(args):
    common = dict(k=32, d=64, n_epochs=args.epochs, learning_rate=args.lr, learning_rate_schedule="cosine",
                  random_state=0)
    out = {
        "pretrained (bundled)": lambda: StudentTeacherDetector(None, **common),
        "random teacher": lambda: StudentTeacherDetector("random", **common),
    }
    if not args.quick:
        for label, absolute in SHORT_TEACHERS.items():
            teacher = short_teacher(absolute, args.teacher_minutes, args.threads or 1)
            out[label] = lambda teacher=teacher: StudentTeacherDetector(teacher, **common)
    out["rotation augmentation (uniform)"] = lambda: StudentTeacherDetector(None, rotation_augmentation=180.0, **common)
    out["pose augmentation (30°)"] = lambda: StudentTeacherDetector(None, rotation_augmentation=30.0, **common)
    out["FPFH memory bank"] = lambda: FPFHMemoryBankDetector(random_state=0)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parse = evaluation_arguments(parser, epochs=60, points=2048, section="ablations", quick=(2, 3, 2, 512))
    parser.add_argument("--teacher-minutes", type=float, default=10.0)
    args = parse(argv)

    datasets = build_datasets(args.datasets, args.n_train, args.n_test, args.points)

    body = [f"Settings: k=32, d=64, student epochs={args.epochs}, learning rate {args.lr} (cosine), "
            f"{args.n_train} train / {args.n_test} test clouds per part type, {args.points} points per cloud; "
            f"short teachers: {args.teacher_minutes:g} minutes of pretraining each (d=64, 2 blocks, 60 scenes of "
            "8,192 points). Paper, MVTec 3D-AD mean AU-PRO: pretrained 0.818, random 0.278; absolute "
            "coordinates and rotation invariance both below pretrained."]
    summary = []
    factories = variants(args)
    for name, data in datasets.items():
        print(f"== {name}", flush=True)
        results = {}
        for label, factory in factories.items():
            print(f"-- {label}", flush=True)
            results[label] = evaluate(factory, data)
        scores, cost = quality_tables(results, metrics=(("au_pro_30", "AU-PRO@0.3"), ("au_pro_05", "@0.05")))
        body += [f"### {name}\n\n" + scores, cost]
        for label, rows in results.items():
            summary.append([name, label] + [sum(r[key] for r in rows) / len(rows) for key in ("au_pro_30", "au_pro_05")])
        print("\n\n".join(body[-2:]), flush=True)
    body.insert(1, "### Means\n\n" + markdown_table(["data", "variant", "AU-PRO@0.3", "AU-PRO@0.05"], summary))
    write_section(args.section, "Ablations of the training strategy (paper, Figure 7)", "\n\n".join(body))


if __name__ == "__main__":
    main()
