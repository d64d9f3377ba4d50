"""Quickstart: train a 3D-ST detector on synthetic range scans and measure AU-PRO.

The synthetic "plate" parts of :func:`skst3d.datasets.make_synthetic_parts` are scanned from
above; half of the test parts carry defects (dents, bumps, cracks, holes, contaminations)
with a label per point. The detector is trained on good parts only, then every test point
gets a score.

    python examples/quickstart.py            # about a minute with a bundled teacher
    python examples/quickstart.py --quick    # seconds, untrained teacher (for tests)
"""

import argparse
import time

import numpy as np

from skst3d import StudentTeacherDetector
from skst3d.datasets import make_synthetic_parts
from skst3d.metrics import au_pro, cloud_roc_auc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and an untrained teacher (seconds)")
    parser.add_argument("--part", default="plate", help="part type (plate, bracket, rod, flange, panel)")
    args = parser.parse_args(argv)

    if args.quick:
        sizes = dict(n_train=4, n_test=4, n_points=512)
        params = dict(teacher="random", k=8, d=16, n_blocks=1, n_epochs=3)
    else:
        sizes = dict(n_train=10, n_test=10, n_points=2048)
        # teacher=None: the teacher bundled with skst3d for d=64 (pretrained on built-in
        # scenes first if this installation has none; that takes several minutes once).
        # a dozen training clouds: a higher learning rate decayed along a cosine (see the user guide)
        params = dict(teacher=None, k=32, d=64, n_epochs=100, learning_rate=1e-2, learning_rate_schedule="cosine")

    # 1. Data: lists of (n_points, 3) float32 clouds; per-point labels 0 = normal, 1.. = defect id.
    data = make_synthetic_parts(part_types=[args.part], random_state=0, **sizes)
    print(f"{len(data.train)} good training clouds, {len(data.test)} test clouds "
          f"({sum(lab.any() for lab in data.test_labels)} defective), {sizes['n_points']} points each")

    # 2. Fit on anomaly-free clouds only.
    start = time.perf_counter()
    detector = StudentTeacherDetector(**params, random_state=0).fit(data.train)
    print(f"fitted in {time.perf_counter() - start:.1f} s (best epoch {detector.best_epoch_}, "
          f"scale s = {detector.scale_:.3f} input units)")

    # 3. Score: per point, higher = more normal (scikit-learn's convention) ...
    normality = detector.score_samples(data.test)
    # ... and the metrics take anomaly scores, higher = more anomalous.
    anomaly = [-s for s in normality]
    print(f"AU-PRO@0.3  = {au_pro(data.test_labels, anomaly):.3f}")
    print(f"AU-PRO@0.05 = {au_pro(data.test_labels, anomaly, integration_limit=0.05):.3f}")
    print(f"cloud AUROC = {cloud_roc_auc(data.test_labels, anomaly):.3f}")

    # 4. Hard decisions per point: +1 normal, -1 anomalous (threshold offset_ from contamination).
    flagged = np.concatenate(detector.predict(data.test)) == -1
    truth = np.concatenate(data.test_labels) != 0
    print(f"flagged {flagged.sum()} of {flagged.size} points; {np.sum(flagged & truth)} of "
          f"{truth.sum()} defect points among them")

    # 5. One score per cloud: the mean score of its lowest-scoring 3 % of points (minus it = its anomaly).
    for i, (score, kinds) in enumerate(zip(detector.score_clouds(data.test), data.test_defect_kinds)):
        print(f"  test cloud {i}: cloud score {score:8.3f}  {', '.join(kinds) or 'good'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
