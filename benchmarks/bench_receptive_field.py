"""How much of a part one descriptor sees: receptive-field size against hops and density.

A descriptor of a network with ``n_blocks`` residual blocks depends on the ``2 * n_blocks``-hop
kNN neighbourhood of its point (equation 2 of the paper). On the parts of bench_quality.py,
for several cloud sizes, this prints the mean size of that neighbourhood (points and share of
the cloud, k = 32) next to the size of the injected defects, and writes the "receptive_field"
section of benchmarks/RESULTS.md. The paper's setting is 8 hops on 64,000-point scans.

    python benchmarks/bench_receptive_field.py          # about a minute
    python benchmarks/bench_receptive_field.py --quick
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _evaluate import build_datasets  # noqa: E402
from _results import markdown_table, write_section  # noqa: E402

from skst3d.geometry import knn_graph, receptive_fields  # noqa: E402

K = 32
N_CENTERS = 64


def mean_field_size(cloud, n_hops, k=K):
    """Mean number of points in the n_hops receptive field of N_CENTERS evenly spread points."""
    points = torch.from_numpy(np.asarray(cloud, dtype=np.float32))
    knn, _ = knn_graph(points, k, backend="kdtree")
    centers = torch.linspace(0, points.shape[0] - 1, N_CENTERS).long()
    fields, offsets = receptive_fields(knn, centers, n_hops)
    return float(np.diff(offsets.numpy()).mean())


def defect_sizes(labels):
    """Points per labelled defect region, over all test clouds."""
    sizes = []
    for lab in labels:
        ids, counts = np.unique(lab[lab > 0], return_counts=True)
        sizes.extend(counts.tolist())
    return np.asarray(sizes)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--points", type=int, nargs="*", default=[2048, 4096, 16384, 65536])
    parser.add_argument("--hops", type=int, nargs="*", default=[2, 4, 8])
    args = parser.parse_args(argv)
    points = [1024, 4096] if args.quick else args.points
    rows = []
    for n_points in points:
        datasets = build_datasets("synthetic,real", 1, 4, n_points)
        for name, data in datasets.items():
            clouds = data.train  # one good scan per part type
            sizes = defect_sizes(data.test_labels)
            for hops in args.hops:
                field = np.mean([mean_field_size(c, hops) for c in clouds])
                rows.append([name, n_points, hops, round(field), f"{field / n_points:.1%}",
                             int(np.median(sizes)) if sizes.size else "", f"{int(sizes.min())}-{int(sizes.max())}" if sizes.size else ""])
                print(rows[-1], flush=True)
    header = ["data", "points per cloud", "hops (2 x blocks)", "receptive field (points)", "share of the cloud",
              "defect median (points)", "defect range (points)"]
    table = markdown_table(header, rows)
    print(table)
    write_section("receptive_field", "Receptive field against hops and density",
                  f"k = {K}; mean over {N_CENTERS} evenly spread centres of one good scan per part type; defect sizes "
                  "over the test scans of the same size.\n\n" + table)


if __name__ == "__main__":
    main()
