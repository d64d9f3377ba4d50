"""Does pretraining work beyond its loss? Bundled teachers against the same networks untrained.

1. Validation Chamfer (equation 3) on fresh pretraining scenes: bundled teacher against the same
   architecture with random weights.
2. A probe on local shape: the descriptor at the key point of small patches of five kinds
   (plane, convex edge, cube corner, cylinder, sphere; random pose, size and noise) is
   classified by leave-one-out 1-nearest-neighbour and by 5-fold logistic regression.
   Descriptors that carry local geometry separate the kinds.
3. A detection probe that leaves the student out: every test point's anomaly is the distance of
   its standardised teacher descriptor to the nearest descriptor of the training points (a
   memory bank), on the parts of bench_quality.py (12 train / 8 test clouds of 4,096 points).
   If this scores like the student, the descriptors, not the student, limit detection.

    python benchmarks/bench_teacher.py [--d 32 64 128] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
from scipy.spatial.transform import Rotation
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import LeaveOneOut, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _evaluate import build_datasets, per_part  # noqa: E402
from _results import markdown_table, write_section  # noqa: E402

from skst3d import TeacherPretrainer  # noqa: E402
from skst3d.datasets import make_pretraining_scenes  # noqa: E402
from skst3d.geometry import mean_knn_distance  # noqa: E402

KINDS = ("plane", "edge", "corner", "cylinder", "sphere")


def _sample_planar(rng, n, normal_axis, keep):
    """Uniform points on a square of side 2 in the plane normal to ``normal_axis``, filtered."""
    pts = rng.uniform(-1, 1, size=(n * 4, 3))
    pts[:, normal_axis] = 0.0
    pts = pts[keep(pts)]
    return pts[:n]


def shape_patch(kind, rng, n_points=1500, noise=0.005):
    """Points of one patch within radius 1 of the key point at the origin (index 0)."""
    if kind == "plane":
        pts = rng.uniform(-1, 1, size=(n_points, 3))
        pts[:, 2] = 0
    elif kind == "edge":  # half-plane z=0, y<=0 and half-plane y=0, z<=0 (a convex 90 degree edge)
        a = _sample_planar(rng, n_points // 2, 2, lambda p: p[:, 1] <= 0)
        b = _sample_planar(rng, n_points - len(a), 1, lambda p: p[:, 2] <= 0)
        pts = np.r_[a, b]
    elif kind == "corner":  # three quarter-planes of a cube corner
        m = n_points // 3
        pts = np.r_[
            _sample_planar(rng, m, 0, lambda p: (p[:, 1] <= 0) & (p[:, 2] <= 0)),
            _sample_planar(rng, m, 1, lambda p: (p[:, 0] <= 0) & (p[:, 2] <= 0)),
            _sample_planar(rng, n_points - 2 * m, 2, lambda p: (p[:, 0] <= 0) & (p[:, 1] <= 0)),
        ]
    elif kind == "cylinder":  # axis along x through (0, 0, -r): the origin lies on the surface
        r = rng.uniform(0.3, 0.8)
        theta = rng.uniform(0, 2 * np.pi, n_points)
        x = rng.uniform(-1, 1, n_points)
        pts = np.c_[x, r * np.sin(theta), r * np.cos(theta) - r]
    else:  # sphere through the origin
        r = rng.uniform(0.4, 1.0)
        v = rng.normal(size=(n_points, 3))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        pts = v * r - np.array([0, 0, r])
    pts = pts[np.linalg.norm(pts, axis=1) <= 1.0]
    pts = np.r_[np.zeros((1, 3)), pts]
    pts = pts + noise * rng.normal(size=pts.shape)
    pts[0] = 0
    return Rotation.random(random_state=rng).apply(pts).astype(np.float32)


def probe_accuracy(teacher, n_per_kind, seed=0):
    rng = np.random.default_rng(seed)
    features, labels = [], []
    for label, kind in enumerate(KINDS):
        for _ in range(n_per_kind):
            patch = shape_patch(kind, rng)
            scale = mean_knn_distance([patch], teacher.k)
            features.append(teacher.transform([patch], scale=scale)[0][0])
            labels.append(label)
    X, y = np.array(features), np.array(labels)
    knn = make_pipeline(StandardScaler(), KNeighborsClassifier(1))
    loo = cross_val_score(knn, X, y, cv=LeaveOneOut()).mean()
    logistic = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    lin = cross_val_score(logistic, X, y, cv=5).mean()
    return float(loo), float(lin)


def memory_bank_au_pro(teacher, datasets):
    """Mean AU-PRO@0.3 and @0.05 per data set of the teacher-descriptor memory bank (kNN with ``teacher.k``)."""
    from skst3d.metrics import au_pro

    out = {}
    for name, data in datasets.items():
        scores = []
        for _, train, test, labels in per_part(data):
            scale = mean_knn_distance(train, teacher.k)  # the detector's s (equation 4)
            bank = torch.from_numpy(np.concatenate(teacher.transform(train, scale=scale)))
            mean, std = bank.mean(0), bank.std(0).clamp_min(1e-6)
            bank = (bank - mean) / std
            anomalies = []
            for descriptors in teacher.transform(test, scale=scale):
                query = (torch.from_numpy(descriptors) - mean) / std
                anomalies.append(torch.cat([torch.cdist(q, bank).min(1).values for q in query.split(2048)]).numpy())
            scores.append([au_pro(labels, anomalies, integration_limit=limit) for limit in (0.3, 0.05)])
        out[name] = np.mean(scores, axis=0)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d", type=int, nargs="*", default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--bank-d", type=int, nargs="*", default=[64], help="teachers given the detection probe")
    parser.add_argument("--bank-files", nargs="*", default=[],
                        help="more teachers (files written by TeacherPretrainer.save) for the detection probe")
    parser.add_argument("--bank-k", type=int, nargs="*", default=[32],
                        help="neighbours of the kNN graph for the detection probe (the networks do not depend on k)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    bundled = [d for d, k in TeacherPretrainer.available_pretrained() if k == 32]
    dims = args.d or bundled
    n_scenes, n_per_kind = (2, 8) if args.quick else (8, 40)
    datasets = build_datasets("synthetic,real", 3, 2, 1024) if args.quick else build_datasets("synthetic,real", 12, 8, 4096)
    rows, bank_rows = [], []
    for d in dims:
        teacher = TeacherPretrainer.from_pretrained(d=d)
        meta = teacher.metadata_
        scenes = make_pretraining_scenes(n_scenes, n_points=16384, random_state=12345)
        untrained = TeacherPretrainer.random(d=d, k=teacher.k, n_blocks=teacher.n_blocks, random_state=0)
        untrained.scale_ = teacher.scale_
        chamfer = -teacher.score(scenes)
        chamfer_untrained = -untrained.score(scenes)
        acc = probe_accuracy(teacher, n_per_kind)
        acc_untrained = probe_accuracy(untrained, n_per_kind)
        rows.append([d, teacher.n_blocks, meta.get("epochs"), chamfer, chamfer_untrained,
                     acc[0], acc_untrained[0], acc[1], acc_untrained[1]])
        print(rows[-1], flush=True)
        for k in args.bank_k if d in args.bank_d else ():
            banks = {label: memory_bank_au_pro(t.set_params(k=k), datasets)
                     for label, t in (("pretrained", teacher), ("random", untrained))}
            for name in datasets:
                bank_rows.append([d, k, name, *banks["pretrained"][name], *banks["random"][name]])
                print(bank_rows[-1], flush=True)
    for path in args.bank_files:
        teacher = TeacherPretrainer.load(path)
        for name, (au_30, au_05) in memory_bank_au_pro(teacher, datasets).items():
            bank_rows.append([f"{teacher.d} ({os.path.basename(path)}: {teacher.metadata_.get('data', '')})",
                              teacher.k, name, au_30, au_05, "", ""])
            print(bank_rows[-1], flush=True)
    header = ["d", "blocks", "pretraining epochs", "val. Chamfer (pretrained)", "val. Chamfer (untrained)",
              "probe 1-NN (pretrained)", "probe 1-NN (random)", "probe logistic (pretrained)",
              "probe logistic (random)"]
    table = markdown_table(header, rows)
    print(table)
    write_section(
        "teacher", "Bundled teachers: reconstruction and a local-shape probe",
        f"Validation Chamfer on {n_scenes} fresh scenes of 16,384 points (lower is better; untrained = same "
        f"architecture, random encoder and decoder). Probe: {n_per_kind} patches per kind ({', '.join(KINDS)}), "
        "descriptor at the key point, accuracy of leave-one-out 1-NN / 5-fold logistic regression "
        "(chance = 0.2).\n\n" + table + "\n\nDetection probe: teacher-descriptor memory bank (nearest training "
        "descriptor), mean AU-PRO over the part types of bench_quality.py, no student.\n\n"
        + markdown_table(["d", "k", "data", "bank AU-PRO@0.3 (pretrained)", "@0.05 (pretrained)",
                          "bank AU-PRO@0.3 (random)", "@0.05 (random)"], bank_rows),
    )


if __name__ == "__main__":
    main()
