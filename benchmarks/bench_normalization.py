"""Location normalisation: per-point neighbour search against statistics looked up at the nearest
training point, on the quality protocol (chosen on dev, reported on test).

The default detector turns each point's regression error into a local z-score against the
errors of the anomaly-free training points around it (``score_normalization="location"``,
48 neighbours). Two ways to find "around it":

* ``per-point``: the 48 training points nearest to every scored point (one 48-NN query per
  scored point: the largest 3D-ST cost at 64k points and above);
* ``lookup-M``: the statistics of the 48 training points around each *training* point,
  computed once; a scored point takes the mean of those of its M nearest training points
  (an M-NN query). skst3d uses ``lookup-{M}`` with M = ``skst3d._scoring._LOOKUP_POINTS``.

For every case, the default detector (seed as in bench_quality.py) is fitted once with each
rule; the student training, the only long part, is run once and replayed for the other fits
(same weights, same random stream), so the rows of a case differ only in the rule.

    python benchmarks/bench_normalization.py --split dev --threads 1
    python benchmarks/bench_normalization.py --split test --threads 1 --rules per-point,lookup-1
    python benchmarks/bench_normalization.py --split none     # the section from the cache
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import protocol  # noqa: E402
from _results import markdown_table, write_section  # noqa: E402

CACHE = os.path.join(HERE, "cache", "normalization")
DEFAULT_RULES = ("per-point", "lookup-1", "lookup-4")


def per_point_normalize(self, keys, errors, n_neighbors=None):
    """The per-point rule: the query's own n nearest training points (skst3d before the lookup)."""
    from skst3d._scoring import nearest_reference

    queries = self._stored(keys)
    n_neighbors = self.n_neighbors if n_neighbors is None else int(n_neighbors)
    tree = self._position_tree() if self.keys.shape[1] <= 3 else None
    mean, std = self._statistics_of(nearest_reference(self.keys, queries, n_neighbors, tree))
    return (np.asarray(errors, dtype=np.float64) - mean) / std


class rule_in_use:
    """Context: LocalErrorReference.normalize follows ``rule`` ("per-point" or "lookup-M")."""

    def __init__(self, rule):
        self.rule = rule

    def __enter__(self):
        import skst3d._scoring as scoring

        self.saved = scoring.LocalErrorReference.normalize, scoring._LOOKUP_POINTS
        if self.rule == "per-point":
            scoring.LocalErrorReference.normalize = per_point_normalize
        else:
            scoring._LOOKUP_POINTS = int(self.rule.split("-")[1])

    def __exit__(self, *exc):
        import skst3d._scoring as scoring

        scoring.LocalErrorReference.normalize, scoring._LOOKUP_POINTS = self.saved


def fit_all(case_data, seed, rules):
    """{rule: fitted default detector}, the students trained once."""
    import skst3d.detector as detector_module
    from skst3d import StudentTeacherDetector
    from skst3d._scoring import LocalErrorReference

    saved = {}
    train_students = detector_module.fit_students

    def recording(model, *args):
        out = train_students(model, *args)
        saved.update(state=copy.deepcopy(model.state_dict()), rng=args[-1].get_state(), out=out)
        return out

    def replaying(model, *args):
        model.load_state_dict(saved["state"])
        args[-1].set_state(saved["rng"])
        return saved["out"]

    fitted, seconds = {}, {}
    try:
        for i, rule in enumerate(rules):
            detector_module.fit_students = recording if i == 0 else replaying
            with rule_in_use(rule):
                start = time.perf_counter()
                fitted[rule] = StudentTeacherDetector(random_state=seed).fit(case_data.train)
                seconds[rule] = time.perf_counter() - start
    finally:
        detector_module.fit_students = train_students
    return fitted, seconds


def evaluate(case, rules):
    from skst3d.defects import cloud_scores
    from skst3d.evaluation import _roc_auc
    from skst3d.metrics import au_pro

    data = protocol.make_case(case)
    fitted, fit_seconds = fit_all(data, case.seed, rules)
    labels = [np.asarray(lab) for lab in data.test_labels]
    defective = np.array([bool(lab.any()) for lab in labels])
    row = {"case": case.name, "split": case.split, "source": case.part.source, "seed": case.seed}
    for rule, detector in fitted.items():
        with rule_in_use(rule):
            start = time.perf_counter()
            scores = detector.score_samples(data.test)
            score_s = time.perf_counter() - start
        anomaly = [-s for s in scores]
        cloud = cloud_scores(scores)
        row[rule] = {
            "au_pro_30": float(au_pro(labels, anomaly, integration_limit=0.3)),
            "cloud_auroc": float(_roc_auc(defective, -cloud)),
            "verdicts": float(np.mean((cloud < detector.cloud_offset_) == defective)),
            "score_s": score_s,
            "fit_s": fit_seconds[rule],
        }
    return row


def cache_path(case):
    return os.path.join(CACHE, f"{case.split}-{case.name.replace('/', '_')}-seed{case.seed}.json")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=("dev", "test", "both", "none"), default="dev")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rules", default=",".join(DEFAULT_RULES))
    parser.add_argument("--parts", default=None, help="comma-separated part names (default: all)")
    args = parser.parse_args(argv)
    from bench_quality import set_threads

    set_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    rules = args.rules.split(",")
    parts = None if args.parts is None else args.parts.split(",")
    splits = {"both": ("dev", "test"), "none": ()}.get(args.split, (args.split,))
    os.makedirs(CACHE, exist_ok=True)
    for split in splits:
        for case in protocol.cases(split, seeds=seeds, parts=parts):
            path = cache_path(case)
            if os.path.exists(path) and set(rules) <= set(json.load(open(path))):
                continue
            row = evaluate(case, rules)
            if os.path.exists(path):  # keep the rules measured before (same students)
                row = {**json.load(open(path)), **row}
            with open(path + ".tmp", "w") as f:
                json.dump(row, f)
            os.replace(path + ".tmp", path)
            print(json.dumps(row), flush=True)
    write_results(seeds)


def write_results(seeds):
    results = {split: [json.load(open(cache_path(c))) for c in protocol.cases(split, seeds=seeds)
                       if os.path.exists(cache_path(c))] for split in ("dev", "test")}
    rules = [r for r in DEFAULT_RULES if any(r in row for rows in results.values() for row in rows)]

    def mean(rows, rule, metric):
        values = [row[rule][metric] for row in rows if rule in row]
        return float(np.mean(values)) if len(values) == len(rows) else "-"

    summary, per_case = [], []
    for split, rows in results.items():
        per_case += [[split, row["case"], *(row[r]["au_pro_30"] if r in row else "-" for r in rules),
                      *(row[r]["score_s"] if r in row else "-" for r in rules)] for row in rows]
        for source in ("synthetic", "real"):
            part = [row for row in rows if row["source"] == source]
            if part:
                summary.append([split, source, len(part)] + [
                    mean(part, rule, metric) for metric in ("au_pro_30", "cloud_auroc", "verdicts") for rule in rules])
    if not summary:
        return
    from skst3d._scoring import _LOOKUP_POINTS

    body = [
        f"Every case of the protocol, seed {', '.join(map(str, seeds))}, default detector, 1 thread; the rows of a "
        f"case share their student weights. skst3d uses lookup-{_LOOKUP_POINTS}, chosen on dev; test is only "
        "reported. Score seconds are for the 12 test scans of a case, indicative only (dev and test ran side by "
        "side on the 2 cores); bench_scaling.py times the lookup on large scans.",
        markdown_table(["split", "parts", "cases"] + [f"{m} {rule}" for m in ("AU-PRO@0.3", "cloud AUROC", "verdicts")
                                                     for rule in rules], summary),
        markdown_table(["split", "case", *(f"AU-PRO@0.3 {r}" for r in rules), *(f"score s {r}" for r in rules)],
                       per_case),
    ]
    write_section("normalization", "Location normalisation: per-point search or lookup at training points",
                  "\n\n".join(body))


if __name__ == "__main__":
    main()
