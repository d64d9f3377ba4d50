"""Evaluate 3D-ST on MVTec 3D-AD: one detector per category, AU-PRO on the images.

Download MVTec 3D-AD yourself (https://www.mvtec.com/company/research/datasets/mvtec-3d-ad,
its own licence) and pass the folder that holds the category folders::

    python examples/mvtec3d_evaluation.py --root /data/mvtec_3d_anomaly_detection
    python examples/mvtec3d_evaluation.py --root ... --categories bagel rope --quick

Protocol (paper, section 4.1): train on the anomaly-free ``train`` split (the ``validation``
split is not needed: the detector holds out its own validation clouds), score every point of
every test cloud, put the scores back on the image grid and fill the pixels without a point
by harmonic interpolation (:func:`skst3d.datasets.scores_to_image`), then compute AU-PRO on
the images against the ground-truth masks. ``benchmarks/mvtec3d.py`` is the full benchmark.
Without a dataset folder the script says so and stops (exit status 0).
"""

import argparse
import os
import sys
import time

import numpy as np

CATEGORIES = ("bagel", "cable_gland", "carrot", "cookie", "dowel", "foam", "peach", "potato", "rope", "tire")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.environ.get("MVTEC3D_ROOT"),
                        help="MVTec 3D-AD folder (default: $MVTEC3D_ROOT)")
    parser.add_argument("--categories", nargs="+", default=None, help="default: every category found under --root")
    parser.add_argument("--n-points", type=int, default=64000, help="farthest point sampling target (paper: 64000)")
    parser.add_argument("--epochs", type=int, default=100, help="student epochs (paper: 100)")
    parser.add_argument("--quick", action="store_true",
                        help="few samples, tiny sizes, untrained teacher (seconds; a smoke test, not a result)")
    args = parser.parse_args(argv)

    if not args.root or not os.path.isdir(args.root):
        print(f"MVTec 3D-AD not found (--root {args.root!r}); download it and pass --root. Nothing to do.",
              file=sys.stderr)
        return 0
    categories = args.categories or [c for c in CATEGORIES if os.path.isdir(os.path.join(args.root, c))]
    if not categories:
        print(f"no MVTec 3D-AD category folders under {args.root!r}. Nothing to do.", file=sys.stderr)
        return 0

    try:
        from skst3d.datasets import load_mvtec3d, scores_to_image
    except ImportError as exc:  # pragma: no cover
        print(f"cannot load MVTec 3D-AD: {exc}", file=sys.stderr)
        return 1
    from skst3d import StudentTeacherDetector
    from skst3d.metrics import au_pro

    if args.quick:
        load_args = dict(max_samples=3)
        params = dict(teacher="random", k=8, d=16, n_blocks=1, n_epochs=2, n_points=1024)
    else:
        load_args = {}
        params = dict(teacher=None, k=32, d=64, n_epochs=args.epochs, n_points=args.n_points)

    results = {}
    for category in categories:
        start = time.perf_counter()
        try:
            train = load_mvtec3d(args.root, category, "train", **load_args)
            test = load_mvtec3d(args.root, category, "test", **load_args)
        except ImportError as exc:
            print(f"cannot read MVTec 3D-AD: {exc}", file=sys.stderr)
            return 1
        detector = StudentTeacherDetector(**params, random_state=0, verbose=0 if args.quick else 1).fit(train.clouds)
        anomaly = [-s for s in detector.score_samples(test.clouds)]
        # Scores back onto the image grid; pixels without a point get harmonic interpolation.
        maps = [scores_to_image(a, index, shape, fill="harmonic")
                for a, index, shape in zip(anomaly, test.pixel_index, test.image_shapes)]
        results[category] = {
            "au_pro_0.3": au_pro(test.masks, maps, integration_limit=0.3),
            "au_pro_0.05": au_pro(test.masks, maps, integration_limit=0.05),
        }
        print(f"{category:12s} AU-PRO@0.3 {results[category]['au_pro_0.3']:.3f}  "
              f"AU-PRO@0.05 {results[category]['au_pro_0.05']:.3f}  "
              f"({len(train.clouds)} train, {len(test.clouds)} test clouds, {time.perf_counter() - start:.0f} s)")
    mean = np.mean([r["au_pro_0.3"] for r in results.values()])
    print(f"{'mean':12s} AU-PRO@0.3 {mean:.3f}   (paper, 3D-ST64: 0.818)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
