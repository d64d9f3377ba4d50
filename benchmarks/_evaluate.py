"""Shared evaluation loop: one detector per part type, AU-PRO and cloud AUROC, timings."""

from __future__ import annotations


import numpy as np

from skst3d.evaluation import evaluate_case as skst3d_evaluate_case


def per_part(data, part_types=None):
    """Yield (part type, train clouds, test clouds, test labels) from a parts Bunch."""
    for part in part_types or data.part_types:
        train = [c for c, p in zip(data.train, data.train_part_types) if p == part]
        test = [(c, l) for c, l, p in zip(data.test, data.test_labels, data.test_part_types) if p == part]
        yield part, train, [c for c, _ in test], [l for _, l in test]


def evaluation_arguments(parser, epochs, points, section, quick, n_test=8):
    """Add the options bench_quality.py and bench_ablations.py share; returns a parse function.

    ``quick`` = (epochs, n_train, n_test, points) of ``--quick``. The parse function also applies
    ``--threads``.
    """
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--datasets", default="synthetic,real")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--n-train", type=int, default=12)
    parser.add_argument("--n-test", type=int, default=n_test)
    parser.add_argument("--points", type=int, default=points)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--section", default=section)

    def parse(argv=None):
        import torch

        args = parser.parse_args(argv)
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.quick:
            args.epochs, args.n_train, args.n_test, args.points = quick
        return args

    return parse


def build_datasets(names, n_train, n_test, n_points, part_types=None):
    """The benchmark data sets named in ``names`` ("synthetic", "real"), by display name.

    The real-geometry set needs the shared meshes; without them it is left out with a message.
    """
    from skst3d.datasets import make_synthetic_parts

    datasets = {}
    if "synthetic" in names:
        datasets["synthetic parts"] = make_synthetic_parts(
            n_train=n_train, n_test=n_test, n_points=n_points, part_types=part_types, random_state=0)
    if "real" in names:
        from real_geometry import make_real_geometry_set

        real = make_real_geometry_set(n_train=n_train, n_test=n_test, n_points=n_points, random_state=0)
        if real is None:
            print("real-geometry set skipped: shared meshes not found")
        else:
            datasets["real-geometry parts"] = real
    return datasets


def evaluate(make_detector, data, part_types=None, log=print):
    """Fit ``make_detector()`` per part type and score its test clouds.

    Returns a list of dicts: part, au_pro_30, au_pro_05, cloud_auroc, fit_s, score_s,
    boundary_fp_share (share of the top-1 % normal-point anomalies lying on the scan boundary).
    """
    rows = []
    for part, train, test, labels in per_part(data, part_types):
        row = dict(part=part, **evaluate_case(make_detector(), train, test, labels, boundary=True))
        rows.append(row)
        log(f"  {part:12s} AU-PRO@0.3 {row['au_pro_30']:.3f}  @0.05 {row['au_pro_05']:.3f}  "
            f"AUROC {row['cloud_auroc']:.3f}  fit {row['fit_s']:.0f}s  score {row['score_s']:.1f}s", flush=True)
    return rows


def evaluate_case(detector, train, test, labels, boundary=False):
    """:func:`skst3d.evaluation.evaluate_case`, its metrics under the benchmarks' keys.

    Keys: au_pro_30, au_pro_05, cloud_auroc, verdict_accuracy, fit_s, score_s, the verdict
    material (cloud_anomalies, defective, cloud_offset, held_out_deciles, held_out_quantiles) and
    boundary_fp_share when ``boundary`` (see :func:`boundary_false_positive_share`).
    """
    from skst3d.defects import cloud_scores
    from skst3d.evaluation import final_estimator

    row, anomalies = skst3d_evaluate_case(detector, train, test, labels)
    final = final_estimator(detector)
    deciles = getattr(final, "held_out_deciles_", None)
    quantiles = getattr(final, "held_out_quantiles_", None)
    out = dict(
        au_pro_30=row["au_pro_0.3"],
        au_pro_05=row["au_pro_0.05"],
        cloud_auroc=row["cloud_auroc"],
        verdict_accuracy=row["verdict_accuracy"],
        fit_s=row["fit_seconds"],
        score_s=row["score_seconds"],
        # The verdict material: cloud anomalies (skst3d.defects.cloud_scores) and thresholds.
        cloud_anomalies=[float(-c) for c in cloud_scores([-a for a in anomalies])],
        defective=[bool(np.any(lab)) for lab in labels],
        cloud_offset=getattr(final, "cloud_offset_", None),
        held_out_deciles=None if deciles is None else [float(v) for v in deciles],
        held_out_quantiles=None if quantiles is None else [float(v) for v in quantiles],
    )
    if boundary:
        out["boundary_fp_share"] = boundary_false_positive_share(test, labels, anomalies)
    return out


def boundary_points(cloud, k=16, ratio=0.5):
    """Points on a scan border (outline, hole rims, step edges): an off-centre neighbourhood.

    On a border the neighbours' centroid lies about 0.6 mean neighbour distances away from
    the point (a half disc), inside the surface about 0.2; 0.5 marks 5 % of the points of the
    synthetic panel (its outline only) and 12 % of the plate (outline, five holes, two ribs).
    """
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(cloud).query(cloud, k + 1)
    offset = np.linalg.norm(cloud[idx[:, 1:]].mean(1) - cloud, axis=1)
    return offset > ratio * dist[:, 1:].mean(1)


def boundary_false_positive_share(clouds, labels, anomalies, top=0.01):
    """Share of the highest-scoring normal points (top 1 % over the set) on the scan boundary."""
    normal = np.concatenate([a[l == 0] for a, l in zip(anomalies, labels)])
    on_border = np.concatenate([boundary_points(c)[l == 0] for c, l in zip(clouds, labels)])
    threshold = np.quantile(normal, 1 - top)
    return float(on_border[normal >= threshold].mean())


def summarise(rows):
    keys = ["au_pro_30", "au_pro_05", "cloud_auroc", "fit_s", "score_s", "boundary_fp_share"]
    return {k: float(np.mean([r[k] for r in rows])) for k in keys}


def quality_tables(results, metrics=(("au_pro_30", "AU-PRO@0.3"), ("au_pro_05", "@0.05"), ("cloud_auroc", "AUROC"))):
    """Markdown: a per-part table of ``metrics`` for every method, with a mean row, and a cost table.

    ``results`` maps a method's label to the rows :func:`evaluate` returned for it.
    """
    from _results import markdown_table

    header = ["part"] + [f"{label} {name}" for label in results for _, name in metrics]
    parts = [r["part"] for r in next(iter(results.values()))]
    means = {label: summarise(rows) for label, rows in results.items()}
    rows = [[part] + [results[label][i][key] for label in results for key, _ in metrics] for i, part in enumerate(parts)]
    rows.append(["mean"] + [means[label][key] for label in results for key, _ in metrics])
    cost = [[label, m["fit_s"], m["score_s"], m["boundary_fp_share"]] for label, m in means.items()]
    return markdown_table(header, rows), markdown_table(
        ["method", "fit s per part type", "score s per part type", "boundary share of top-1% normal anomalies"], cost)
