"""Cloud verdicts on the dev/test protocol: the cloud score and its threshold, chosen on dev.

For every case of ``benchmarks/protocol.py`` (seed 0 unless ``--seeds``) the default detector
(``--method 3d-st``: the same without fusion, 3D-ST alone) is fitted on the case's 12 good scans and scores its 12 test scans (half defective). The test
scans' point anomalies and the detector's ``held_out_quantiles_`` are cached under
``benchmarks/cache/verdicts/`` (keyed by the case and a hash of the skst3d files that point
scores depend on). From them, for every cloud score

    tail share t of a scan's most anomalous points, mean anomaly (t = 0: the highest one)

and every cloud threshold (:func:`skst3d.defects.cloud_threshold`)

    anomaly q50 + margin * (q99 - q50) of the held-out good points' anomalies,

the mean over cases of the cloud AUROC and of the share of right verdicts. For the default,
the tail with the best dev AUROC, then the margin with the best dev verdict accuracy at that
tail, are the ones skst3d uses (``skst3d.defects.CLOUD_TAIL`` and ``FUSED_CLOUD_MARGIN``); for
3D-ST alone, the margin with the best dev verdict accuracy at that same tail
(``CLOUD_MARGIN``). The test split shows them (and the highest-anomaly rule, tail 0, with its
own best dev margin) where nothing was chosen.

    python benchmarks/bench_verdicts.py --threads 1
    python benchmarks/bench_verdicts.py --threads 1 --method 3d-st
    python benchmarks/bench_verdicts.py --quick      # tiny sizes: a smoke run
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import sys
import time

import numpy as np
from sklearn.metrics import roc_auc_score

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import protocol  # noqa: E402
from _results import markdown_table, write_section  # noqa: E402
from bench_quality import set_threads  # noqa: E402

from skst3d import defects  # noqa: E402

CACHE = os.path.join(HERE, "cache", "verdicts")
PACKAGE = os.path.normpath(os.path.join(HERE, "..", "skst3d"))
# Files that turn point scores into verdicts, reports and pictures: not part of the cache key.
NOT_POINT_SCORES = {"defects.py", "__main__.py", "plotting.py", "io.py", "evaluation.py", "metrics.py"}

METHODS = {"default": {}, "3d-st": {"fusion": None}}
STALE = []  # cases read from results of earlier skst3d code (--reuse-stale)
TAILS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1)
MARGINS = np.round(np.arange(0.0, 4.01, 0.125), 3)


def point_score_fingerprint():
    """A hash of the skst3d files (and bundled weights) that point scores depend on."""
    h = hashlib.sha1()
    files = sorted(glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True)
                   + glob.glob(os.path.join(PACKAGE, "weights", "*")))
    for path in files:
        if os.path.basename(path) in NOT_POINT_SCORES or "__pycache__" in path:
            continue
        h.update(os.path.relpath(path, PACKAGE).encode())
        with open(path, "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()[:12]


def case_scores(case, args, fingerprint):
    """(test point anomalies, defective flags, held-out quantiles) of one case, cached."""
    from skst3d import StudentTeacherDetector

    folder = os.path.join(args.cache, args.method)
    stem = os.path.join(folder, f"{case.split}-{case.name.replace('/', '_')}-s{case.seed}")
    path = f"{stem}-{fingerprint}.npz"
    cached = [path] if os.path.exists(path) else []
    if not cached and args.reuse_stale:
        cached = sorted(f for f in glob.glob(f"{stem}-*.npz") if not f.endswith(".tmp.npz"))
    if cached and not args.refresh:
        if cached[0] != path:
            STALE.append(case.name)
        z = np.load(cached[0], allow_pickle=True)
        return list(z["anomaly"]), z["defective"], z["quantiles"]
    data = protocol.make_case(case)
    if args.quick:
        data.train, data.test, data.test_labels = data.train[:6], data.test[:6], data.test_labels[:6]
    params = dict(METHODS[args.method], **({"n_epochs": 3} if args.quick else {}))
    start = time.perf_counter()
    detector = StudentTeacherDetector(random_state=case.seed, **params).fit(data.train)
    anomaly = [-s.astype(np.float32) for s in detector.score_samples(data.test)]
    defective = np.array([bool(np.any(lab)) for lab in data.test_labels])
    os.makedirs(folder, exist_ok=True)
    holder = np.empty(len(anomaly), dtype=object)
    holder[:] = anomaly
    np.savez_compressed(path + ".tmp.npz", anomaly=holder, defective=defective, quantiles=detector.held_out_quantiles_)
    os.replace(path + ".tmp.npz", path)
    print(f"  {case.split} {case.name} seed {case.seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return anomaly, defective, detector.held_out_quantiles_


def case_grid(anomaly, defective, quantiles):
    """(AUROC per tail, verdict accuracy per tail and margin) of one case."""
    auroc = np.full(len(TAILS), np.nan)
    accuracy = np.full((len(TAILS), len(MARGINS)), np.nan)
    for i, tail in enumerate(TAILS):
        cloud = -defects.cloud_scores([-a.astype(np.float64) for a in anomaly], tail=tail)  # anomaly scale
        if 0 < defective.sum() < len(defective):
            auroc[i] = roc_auc_score(defective, cloud)
        for j, margin in enumerate(MARGINS):
            threshold = -defects.threshold_from_percentiles(*quantiles, margin)  # anomaly scale
            accuracy[i, j] = np.mean((cloud > threshold) == defective)
    return auroc, accuracy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="default", choices=sorted(METHODS))
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--split", default="both", choices=["dev", "test", "both"],
                        help="split to fit (the other is read from the cache, to run the two side by side)")
    parser.add_argument("--refresh", action="store_true", help="refit even when cached")
    parser.add_argument("--reuse-stale", action="store_true",
                        help="use cached point scores even when the skst3d code they were computed with changed")
    parser.add_argument("--cache", default=CACHE)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--note", default="", help="a sentence added to the RESULTS.md section")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    fingerprint = point_score_fingerprint()
    grids = {}
    for split in ("dev", "test"):
        listed = protocol.cases(split, seeds=seeds, quick=args.quick)
        if not protocol.meshes_available():
            listed = [c for c in listed if c.part.source != "real"]
        if args.split not in (split, "both"):
            continue
        rows = [case_grid(*case_scores(case, args, fingerprint)) for case in listed]
        grids[split] = (np.nanmean([r[0] for r in rows], axis=0), np.nanmean([r[1] for r in rows], axis=0), len(rows))
    if len(grids) < 2:
        print(f"{args.split} fitted; run with --split both to report (reads both splits from the cache)")
        return grids

    dev_auroc, dev_accuracy, _ = grids["dev"]
    # the tail is chosen with the default detector; 3D-ST alone keeps it and gets its own margin
    best_tail = int(np.nanargmax(dev_auroc)) if args.method == "default" else TAILS.index(defects.CLOUD_TAIL)
    chosen = [(best_tail, int(np.nanargmax(dev_accuracy[best_tail])))]
    if best_tail != 0:
        chosen.append((0, int(np.nanargmax(dev_accuracy[0]))))
    rows = []
    for i, j in chosen:
        label = " (chosen on dev)" if args.method == "default" else " (the default's)"
        row = [f"{TAILS[i]:g}" + (label if i == best_tail else " (highest point)"), f"{MARGINS[j]:g}"]
        for split in ("dev", "test"):
            auroc, accuracy, _ = grids[split]
            row += [auroc[i], accuracy[i, j]]
        rows.append(row)
    table = markdown_table(["cloud score tail", "margin (best on dev)", "dev cloud AUROC", "dev verdicts",
                            "test cloud AUROC", "test verdicts"], rows)
    sweep = markdown_table(
        ["tail", "dev cloud AUROC", "dev best verdicts (margin)", "test cloud AUROC"],
        [[f"{t:g}", dev_auroc[i], f"{np.nanmax(dev_accuracy[i]):.3f} ({MARGINS[int(np.nanargmax(dev_accuracy[i]))]:g})",
          grids["test"][0][i]] for i, t in enumerate(TAILS)])
    margin = defects.FUSED_CLOUD_MARGIN if args.method == "default" else defects.CLOUD_MARGIN
    in_use = f"skst3d uses tail {defects.CLOUD_TAIL:g} and margin {margin:g} for this detector"
    body = "\n\n".join([
        f"{'The default detector' if args.method == 'default' else 'StudentTeacherDetector(fusion=None)'}, cases of benchmarks/protocol.py (seeds {args.seeds}): dev {grids['dev'][2]} "
        f"cases, test {grids['test'][2]} cases, {'6' if args.quick else '12'} test scans each (half defective). "
        "Cloud score: mean anomaly of "
        "the scan's most anomalous `tail` share of points; threshold: the held-out points' median anomaly plus "
        "`margin` times (99th percentile - median) (skst3d.defects.cloud_threshold). "
        + ("Tail chosen by dev cloud AUROC, margin" if args.method == "default" else "Tail as chosen for the default; margin")
        + f" by dev verdict accuracy; test only reports. {in_use}.",
        table, "Every tail (dev chooses; test shown for reference only):", sweep,
    ] + ([f"{len(STALE)} of {grids['dev'][2] + grids['test'][2]} cases were computed with earlier skst3d code "
          "(`--reuse-stale`)."] if STALE else []) + ([args.note] if args.note else []))
    print(body)
    if not args.no_write:
        name = "verdicts" + ("" if args.method == "default" else "_3d_st") + ("_quick" if args.quick else "")
        title = "Cloud verdicts: the cloud score and threshold (dev/test protocol)"
        write_section(name, title + ("" if args.method == "default" else ", 3D-ST alone"), body)
    return grids


if __name__ == "__main__":
    main()
