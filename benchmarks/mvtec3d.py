"""MVTec 3D-AD benchmark: reproduce the 3D-ST rows of the paper's Table 1 (AU-PRO@0.3).

Download MVTec 3D-AD yourself (https://www.mvtec.com/company/research/datasets/mvtec-3d-ad,
its own licence) and pass the folder that holds the category folders::

    python benchmarks/mvtec3d.py --root /data/mvtec_3d_anomaly_detection
    python benchmarks/mvtec3d.py --root ... --categories bagel rope --epochs 20 --max-train 50
    python benchmarks/mvtec3d.py --root ... --quick --no-write     # smoke test, seconds

Protocol (paper, sections 4.1-4.2 and the MVTec 3D-AD evaluation):

* one detector per category, ``StudentTeacherDetector(teacher=None, d=..., n_points=...,
  n_epochs=...)``, fitted on the anomaly-free ``train`` clouds (background plane removed). The
  ``validation`` split is not read: the detector holds out its own validation clouds to pick
  the best epoch;
* every point of every test cloud is scored (anomaly = minus ``score_samples``); the scores
  are put back on the 800 x 800 image grid and the pixels without a point (background, holes)
  are filled by harmonic interpolation (``scores_to_image(..., fill="harmonic")``);
* AU-PRO up to a false positive rate of 0.3 over all test images of the category, computed on
  the images against the 2-D ground-truth masks (exactly the MVTec 3D-AD evaluation), and the
  image-level ROC AUC (I-AUROC: an image's score is the maximum of its anomaly map, its label
  whether its mask has any anomalous pixel), which the paper does not report.

The table printed (and written to the ``mvtec3d`` section of ``benchmarks/RESULTS.md``) has
the layout of the paper's Table 1 with our row under the paper's 3D-ST64 and 3D-ST128 rows.
Without a dataset folder the script says so and exits with status 0. ``--quick`` runs tiny
settings (untrained teacher, 2 epochs, 1024 points, 3 training clouds, 2 test clouds per
defect type): a smoke test of the pipeline, not a result.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

CATEGORIES = ("bagel", "cable_gland", "carrot", "cookie", "dowel", "foam", "peach", "potato", "rope", "tire")

# AU-PRO@0.3 of the paper's Table 1 (3D-ST, point clouds), in CATEGORIES order; the means are
# the paper's (over all ten categories).
PAPER = {
    "3D-ST64 (paper)": (0.939, 0.440, 0.984, 0.904, 0.876, 0.633, 0.937, 0.989, 0.967, 0.507),
    "3D-ST128 (paper)": (0.950, 0.483, 0.986, 0.921, 0.905, 0.632, 0.945, 0.988, 0.976, 0.542),
}
PAPER_MEAN = {"3D-ST64 (paper)": 0.818, "3D-ST128 (paper)": 0.833}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.environ.get("MVTEC3D_ROOT"),
                        help="MVTec 3D-AD folder holding the category folders (default: $MVTEC3D_ROOT)")
    parser.add_argument("--categories", nargs="+", default=None,
                        help="categories to evaluate (default: every MVTec 3D-AD category found under --root)")
    parser.add_argument("--n-points", type=int, default=64000,
                        help="farthest point sampling target per cloud (paper: 64000)")
    parser.add_argument("--epochs", type=int, default=100, help="student training epochs (paper: 100)")
    parser.add_argument("--d", type=int, default=64, help="descriptor dimension (paper: 64 or 128)")
    parser.add_argument("--k", type=int, default=32, help="nearest neighbours of the kNN graph (paper: 32)")
    parser.add_argument("--max-train", type=int, default=None, help="use at most N training clouds per category")
    parser.add_argument("--max-test", type=int, default=None,
                        help="use at most N test clouds per defect type (good, crack, ...) of each category")
    parser.add_argument("--fill", default="harmonic", choices=("harmonic", "nearest"),
                        help="how pixels without a point get a score (paper: harmonic)")
    parser.add_argument("--batch", type=int, default=4, help="test clouds scored per call (bounds memory)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny settings and an untrained teacher: a smoke test in seconds, not a result")
    parser.add_argument("--results", default=None,
                        help="markdown file whose 'mvtec3d' section is (re)written (default: benchmarks/RESULTS.md)")
    parser.add_argument("--no-write", action="store_true", help="print the table only, write no results file")
    args = parser.parse_args(argv)
    for name in ("n_points", "epochs", "d", "k", "max_train", "max_test", "batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    return args


def detector_params(args):
    """Keyword arguments of StudentTeacherDetector for the command line (``--quick``: tiny)."""
    if args.quick:
        return dict(teacher="random", k=8, d=16, n_blocks=1, n_epochs=2, n_points=1024, verbose=0)
    return dict(teacher=None, k=args.k, d=args.d, n_epochs=args.epochs, n_points=args.n_points, verbose=1)


def evaluate_category(root, category, args, params):
    """Fit on the category's training clouds and evaluate on its test images.

    Returns
    -------
    result : dict
        ``au_pro`` (AU-PRO@0.3 on the images), ``i_auroc`` (NaN when the test set lacks good
        or defective images), ``n_train``, ``n_test``, ``fit_s``, ``score_s``, ``fill_s``.
    """
    from skst3d import StudentTeacherDetector
    from skst3d.datasets import load_mvtec3d, scores_to_image
    from skst3d.metrics import au_pro, cloud_roc_auc

    max_train = 3 if args.quick and args.max_train is None else args.max_train
    max_test = 2 if args.quick and args.max_test is None else args.max_test
    train = load_mvtec3d(root, category, "train", defect_types=["good"], max_samples=max_train)
    test = load_mvtec3d(root, category, "test", max_samples=max_test)
    if not train.clouds or not test.clouds:
        raise ValueError(f"{category}: {len(train.clouds)} training and {len(test.clouds)} test clouds found")

    start = time.perf_counter()
    detector = StudentTeacherDetector(**params, random_state=0).fit(train.clouds)
    fit_s = time.perf_counter() - start

    score_s = fill_s = 0.0
    maps = []
    # Score a few clouds at a time: a full-size test set does not fit in memory at once.
    for lo in range(0, len(test.clouds), args.batch):
        hi = lo + args.batch
        start = time.perf_counter()
        anomaly = [-s for s in detector.score_samples(test.clouds[lo:hi])]
        score_s += time.perf_counter() - start
        start = time.perf_counter()
        maps += [scores_to_image(a, index, shape, fill=args.fill)
                 for a, index, shape in zip(anomaly, test.pixel_index[lo:hi], test.image_shapes[lo:hi])]
        fill_s += time.perf_counter() - start

    masks = [np.asarray(m) > 0 for m in test.masks]
    result = dict(au_pro=au_pro(masks, maps, integration_limit=0.3), n_train=len(train.clouds),
                  n_test=len(test.clouds), fit_s=fit_s, score_s=score_s, fill_s=fill_s)
    labels = [m.any() for m in masks]
    # ROC AUC needs both classes; a capped or unusual test set may lack one.
    result["i_auroc"] = cloud_roc_auc(masks, maps) if 0 < sum(labels) < len(labels) else float("nan")
    return result


def _fmt(value):
    return "–" if value is None or not np.isfinite(value) else f"{value:.3f}"


def build_tables(results, columns):
    """Table 1 layout: one row per method, one column per category plus the mean.

    The mean of our row (and of the paper rows, for a like-for-like comparison) is taken over
    the categories evaluated here; with all ten it is the paper's mean.
    """
    from _results import markdown_table

    done = [c for c in columns if c in results]
    all_ten = set(CATEGORIES) <= set(done)
    header = ["Method", *[c.replace("_", " ") for c in columns], "mean"]
    rows = []
    for name, values in PAPER.items():
        by_cat = dict(zip(CATEGORIES, values))
        cells = [_fmt(by_cat.get(c)) for c in columns]
        if all_ten:
            mean = PAPER_MEAN[name]
        else:
            shared = [by_cat[c] for c in done if c in by_cat]
            mean = float(np.mean(shared)) if shared else float("nan")
        rows.append([name, *cells, _fmt(mean)])
    ours_pro = [results[c]["au_pro"] if c in results else None for c in columns]
    ours_mean = float(np.mean([results[c]["au_pro"] for c in done])) if done else float("nan")
    rows.append(["3D-ST (skst3d)", *[_fmt(v) for v in ours_pro], _fmt(ours_mean)])
    au_pro_table = markdown_table(header, rows)

    aurocs = [results[c]["i_auroc"] for c in done if np.isfinite(results[c]["i_auroc"])]
    i_row = ["3D-ST (skst3d)", *[_fmt(results[c]["i_auroc"]) if c in results else "–" for c in columns],
             _fmt(float(np.mean(aurocs)) if aurocs else float("nan"))]
    i_auroc_table = markdown_table(header, [i_row])
    return au_pro_table, i_auroc_table


def main(argv=None):
    args = parse_args(argv)
    if not args.root or not os.path.isdir(args.root):
        print(f"MVTec 3D-AD not found (--root {args.root!r}): download it from "
              "https://www.mvtec.com/company/research/datasets/mvtec-3d-ad and pass --root PATH "
              "(or set $MVTEC3D_ROOT). Nothing to do.")
        return 0
    if args.categories:
        categories = list(args.categories)
        missing = [c for c in categories if not os.path.isdir(os.path.join(args.root, c))]
        if missing:
            print(f"categories {missing} not found under {args.root!r}", file=sys.stderr)
            return 2
    else:
        categories = [c for c in CATEGORIES if os.path.isdir(os.path.join(args.root, c))]
    if not categories:
        print(f"no MVTec 3D-AD category folders ({', '.join(CATEGORIES)}) under {args.root!r}. Nothing to do.")
        return 0

    sys.path.insert(0, HERE)
    try:
        import tifffile  # noqa: F401
        import PIL  # noqa: F401
    except ImportError as exc:
        print(f"reading MVTec 3D-AD needs tifffile and Pillow (pip install skst3d[mvtec]): {exc}", file=sys.stderr)
        return 1

    params = detector_params(args)
    results = {}
    for category in categories:
        start = time.perf_counter()
        r = results[category] = evaluate_category(args.root, category, args, params)
        print(f"{category:12s} AU-PRO@0.3 {r['au_pro']:.3f}  I-AUROC {_fmt(r['i_auroc'])}  "
              f"({r['n_train']} train / {r['n_test']} test clouds; fit {r['fit_s']:.1f} s, "
              f"score {r['score_s']:.1f} s, {args.fill} fill {r['fill_s']:.1f} s; "
              f"total {time.perf_counter() - start:.0f} s)", flush=True)

    # Table 1 columns: the ten categories, plus any other folder evaluated on request.
    columns = list(CATEGORIES) + [c for c in categories if c not in CATEGORIES]
    au_pro_table, i_auroc_table = build_tables(results, columns)
    settings = ", ".join(f"{k}={v}" for k, v in params.items() if k != "verbose")
    caps = f"max_train={args.max_train}, max_test={args.max_test} per defect type"
    if args.quick:
        caps = "quick mode: 3 train clouds, 2 test clouds per defect type (smoke test, not a result)"
    note = ("AU-PRO@0.3 on the images (MVTec 3D-AD evaluation); scores of the points on the image "
            f"grid, empty pixels filled by {args.fill} interpolation. Means over the categories "
            "evaluated here (the paper's own means when all ten are). '–': not evaluated.")
    body = (f"Detector: StudentTeacherDetector({settings}, random_state=0); {caps}.\n\n"
            f"{note}\n\n**AU-PRO@0.3** (paper Table 1 layout)\n\n{au_pro_table}\n\n"
            f"**I-AUROC** (image level; not in the paper)\n\n{i_auroc_table}\n")
    print()
    print(body)

    if not args.no_write:
        import _results

        if args.results:
            _results.RESULTS = os.path.abspath(args.results)  # write_section reads it at call time
        _results.write_section("mvtec3d", "MVTec 3D-AD: AU-PRO@0.3 per category (paper Table 1)", body)
        print(f"wrote section 'mvtec3d' of {_results.RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
