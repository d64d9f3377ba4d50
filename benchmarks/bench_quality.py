"""Detection quality on the fixed protocol: every choice on dev, reported on test.

The data, the split (pretraining / dev / test) and the cases are those of
``benchmarks/protocol.py``. For every method, case and seed one detector is fitted on the
case's 12 good scans and scores its 12 test scans: AU-PRO@0.3, AU-PRO@0.05 (anomaly scores =
minus ``score_samples``), cloud AUROC, fit and score seconds. Each result is cached as JSON
under ``benchmarks/cache/quality/`` (keyed by the method, its parameters, the case and a hash
of the case's scans; a result whose skst3d code changed since is recomputed unless
``--reuse-stale``), so adding a method refits nothing else. The "quality" section of
``benchmarks/RESULTS.md`` shows every requested method on both splits, from the cache where
this run did not compute it ("-" where nothing is cached).

Built-in methods:

  default           StudentTeacherDetector(random_state=seed), as a user gets it (the bundled
                    teacher, registration, location normalisation, FPFH fusion)
  random-teacher    StudentTeacherDetector(teacher="random", random_state=seed)
  fpfh              skst3d.baseline.FPFHMemoryBankDetector(random_state=seed)
  btf-open3d        skst3d.baseline.Open3DFPFHDetector(random_state=seed) (needs open3d)

Experimental configurations without editing code: ``--variant NAME=JSON`` (repeatable; the
variant runs in addition to --methods). The JSON holds keyword arguments of
StudentTeacherDetector; the special keys ``"method"`` (a built-in method to start from,
default "default"; its parameters are updated with the others) and ``"registration"`` (true
puts RigidRegistration(random_state=seed) in front; an object gives its keyword arguments;
false turns the detector's own registration off) change what is built. A ``"teacher"`` naming a file loads it with TeacherPretrainer.load; a
``"fusion"`` object gives the parameters of an FPFHMemoryBankDetector companion.

    python benchmarks/bench_quality.py --split dev --methods fpfh,btf-open3d --threads 1
    python benchmarks/bench_quality.py --split dev --methods fpfh \\
        --variant 'k16s3={"k": 16, "n_students": 3}' \\
        --variant 'reg-descriptor={"registration": true}' \\
        --variant 'btf-v2={"method": "btf-open3d", "voxel_ratio": 2}'
    python benchmarks/bench_quality.py --quick --methods fpfh     # smoke run, tiny sizes
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import protocol  # noqa: E402
from _evaluate import evaluate_case  # noqa: E402
from _results import markdown_table, write_section  # noqa: E402

CACHE = os.path.join(HERE, "cache", "quality")
PACKAGE = os.path.normpath(os.path.join(HERE, "..", "skst3d"))

#: Built-in methods: the estimator family, its keyword arguments, registration in front.
BUILTIN = {
    "default": {"family": "st", "params": {}},
    "random-teacher": {"family": "st", "params": {"teacher": "random"}},
    "fpfh": {"family": "fpfh", "params": {}},
    "btf-open3d": {"family": "btf", "params": {}},
}

#: skst3d files whose content fingerprints a family's results (a change makes them stale).
CODE = {
    "st": ["**/*.py", "weights/*"],
    "fpfh": ["baseline.py", "_validation.py", "_scoring.py", "_normalization.py"],
    "btf": ["baseline.py", "_validation.py"],
}

METRICS = ("au_pro_30", "au_pro_05", "cloud_auroc", "fit_s", "score_s")


def parse_variant(text):
    """``NAME=JSON`` -> (name, spec) for a method built from a built-in one."""
    name, sep, payload = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--variant takes NAME=JSON, got {text!r}")
    try:
        params = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--variant {name}: invalid JSON ({exc})") from exc
    if not isinstance(params, dict):
        raise argparse.ArgumentTypeError(f"--variant {name}: the JSON must be an object")
    base = params.pop("method", "default")
    if base not in BUILTIN:
        raise argparse.ArgumentTypeError(f"--variant {name}: unknown method {base!r}; built-in: {sorted(BUILTIN)}")
    spec = json.loads(json.dumps(BUILTIN[base]))
    if "registration" in params:
        spec["registration"] = params.pop("registration")
        if spec["registration"] is False:  # the detector's own registration off too
            params["registration"] = False
    spec["params"].update(params)
    spec["base"] = base
    return name, spec


def method_specs(names, variants):
    specs = {}
    for name in names:
        if name not in BUILTIN:
            raise SystemExit(f"unknown method {name!r}; built-in: {', '.join(BUILTIN)} (or use --variant)")
        specs[name] = dict(BUILTIN[name], base=name)
    for name, spec in variants:
        if name in BUILTIN:
            raise SystemExit(f"--variant {name}: the name of a built-in method")
        specs[name] = spec
    return specs


def open3d_available():
    try:
        import open3d  # noqa: F401
    except ImportError:
        return False
    return True


def build(spec, seed, quick=False):
    """A fresh estimator for ``spec`` seeded by ``seed``."""
    params = dict(spec["params"])
    if spec["family"] == "fpfh":
        from skst3d.baseline import FPFHMemoryBankDetector

        return FPFHMemoryBankDetector(**{"random_state": seed, **params})
    if spec["family"] == "btf":
        from skst3d.baseline import Open3DFPFHDetector

        return Open3DFPFHDetector(**{"random_state": seed, **params})
    from skst3d import StudentTeacherDetector

    teacher = params.get("teacher")
    if isinstance(teacher, str) and teacher != "random":
        from skst3d import TeacherPretrainer

        params["teacher"] = TeacherPretrainer.load(teacher)
    if isinstance(params.get("fusion"), dict):  # FPFH companion with these parameters
        from skst3d.baseline import FPFHMemoryBankDetector

        params["fusion"] = FPFHMemoryBankDetector(**{"n_points": 16384, "sampling": "random", **params["fusion"]})
    if quick:
        params.setdefault("n_epochs", 3)
    detector = StudentTeacherDetector(**{"random_state": seed, **params})
    registration = spec.get("registration")
    if registration:
        from sklearn.pipeline import make_pipeline
        from skst3d.registration import RigidRegistration

        options = registration if isinstance(registration, dict) else {}
        return make_pipeline(RigidRegistration(**{"random_state": seed, **options}), detector)
    return detector


_FINGERPRINTS = {}


def code_fingerprint(family, _memo=_FINGERPRINTS):
    """A hash of the skst3d files that ``family``'s results depend on (:data:`CODE`)."""
    if family not in _memo:
        h = hashlib.sha1()
        files = sorted({f for pattern in CODE[family] for f in glob.glob(os.path.join(PACKAGE, pattern), recursive=True)})
        for path in files:
            h.update(os.path.relpath(path, PACKAGE).encode())
            with open(path, "rb") as fh:
                h.update(fh.read())
        _memo[family] = h.hexdigest()[:12]
    return _memo[family]


def cache_path(name, spec, case, data_hash, args):
    fields = {"method": name, "family": spec["family"], "params": spec["params"],
              "registration": spec.get("registration") or False, "quick": bool(args.quick),
              "case": case.key, "data": data_hash}
    if spec["family"] == "st" and args.threads != 1:
        fields["threads"] = args.threads  # torch results repeat exactly at a fixed thread count
    key = json.dumps(fields, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:20]
    return os.path.join(args.cache, name, f"{case.part.name}-{case.style}-{case.n_points}-s{case.seed}-{digest}.json"), key


def load_cached(path, family, reuse_stale):
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        record = json.load(fh)
    if record.get("code") != code_fingerprint(family) and not reuse_stale:
        return None
    return record


def run_case(name, spec, case, data, args, log):
    """The result dict of one method on one case (from the cache unless stale or --refresh)."""
    path, key = cache_path(name, spec, case, data.fingerprint, args)
    record = None if args.refresh else load_cached(path, spec["family"], args.reuse_stale)
    if record is None:
        detector = build(spec, case.seed, args.quick)
        metrics = evaluate_case(detector, data.train, data.test, data.test_labels)
        record = dict(metrics, method=name, case=case.name, split=case.split, source=case.part.source,
                      seed=case.seed, key=key, code=code_fingerprint(spec["family"]),
                      date=time.strftime("%Y-%m-%d %H:%M"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w") as fh:
            json.dump(record, fh, indent=1, sort_keys=True)
        os.replace(path + ".tmp", path)
        origin = ""
    else:
        origin = " (cached" + (", stale code" if record.get("code") != code_fingerprint(spec["family"]) else "") + ")"
    log(f"  {name:18s} {case.name:34s} seed {case.seed}  AU-PRO@0.3 {record['au_pro_30']:.3f}  "
        f"@0.05 {record['au_pro_05']:.3f}  AUROC {record['cloud_auroc']:.3f}  fit {record['fit_s']:.1f}s  "
        f"score {record['score_s']:.1f}s{origin}")
    return record


def case_data(case):
    data = protocol.make_case(case)
    data.fingerprint = protocol.data_fingerprint(data)
    return data


def log_line(text):
    print(text, flush=True)


def collect(specs, splits, compute, args, log=log_line):
    """Results by (method, split) -> list of records; computes the splits in ``compute``."""
    results = {(m, s): [] for m in specs for s in splits}
    for split in splits:
        listed = protocol.cases(split, seeds=args.seeds, parts=args.parts, quick=args.quick)
        if not protocol.meshes_available():
            skipped = [c for c in listed if c.part.source == "real"]
            if skipped:
                log(f"{split}: {len(skipped)} real-geometry cases skipped: meshes folder "
                    f"{protocol.mesh_root()} not found")
            listed = [c for c in listed if c.part.source != "real"]
        computing = split in compute
        log(f"== {split}: {len(listed)} cases{'' if computing else ' (from the cache only)'}")
        for case in listed:
            data = case_data(case)
            for name, spec in specs.items():
                if computing:
                    results[name, split].append(run_case(name, spec, case, data, args, log))
                    continue
                path, _ = cache_path(name, spec, case, data.fingerprint, args)
                record = load_cached(path, spec["family"], args.reuse_stale)
                if record is not None:
                    results[name, split].append(record)
    return results


def _fmt(value, digits=3):
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def split_summary(records, metric):
    """Mean over cases and seeds, and the standard deviation over seeds of the per-seed mean.

    None when a seed misses cases that other seeds have (an incomplete run) or nothing is there.
    """
    if not records:
        return None, None
    by_seed = {}
    for r in records:
        by_seed.setdefault(r["seed"], []).append(r[metric])
    if len({len(v) for v in by_seed.values()}) > 1:
        return None, None
    means = [float(np.mean(v)) for v in by_seed.values()]
    return float(np.mean(means)), float(np.std(means))


def verdict_accuracy(record):
    """Share of a case's test scans judged right, as recorded when the case was computed.

    The cloud score and threshold are chosen in ``bench_verdicts.py`` (section "verdicts");
    records without ``held_out_quantiles`` were computed before that rule, with the highest
    point anomaly as the cloud score.
    """
    return record.get("verdict_accuracy", float("nan"))


def target_check(results, method, anchors, split="test", margin=0.05):
    """Lines: ``method`` against the better anchor per source, and part types far below it."""
    lines = []
    mine = results.get((method, split), [])
    if not mine:
        return lines
    for source in ("synthetic", "real"):
        own = split_summary([r for r in mine if r["source"] == source], "au_pro_30")[0]
        best = [(split_summary([r for r in results.get((a, split), []) if r["source"] == source], "au_pro_30")[0], a)
                for a in anchors]
        best = [b for b in best if b[0] is not None]
        if own is None or not best:
            continue
        value, name = max(best)
        lines.append(f"{split} {source}: {method} {own:.3f}, the better baseline ({name}) {value:.3f}, "
                     f"difference {own - value:+.3f}.")
    parts = sorted({r["case"].split("/")[0] for r in mine})
    below = []
    for part in parts:
        own = np.mean([r["au_pro_30"] for r in mine if r["case"].split("/")[0] == part])
        others = [np.mean(v) for a in anchors
                  if (v := [r["au_pro_30"] for r in results.get((a, split), []) if r["case"].split("/")[0] == part])]
        if others and own < max(others) - margin:
            below.append(f"{part} ({own:.3f} against {max(others):.3f})")
    lines.append(f"{split} part types more than {margin} below the better baseline: "
                 + (", ".join(below) if below else "none") + f" (of {len(parts)}).")
    return lines


def summary_table(results, specs, splits):
    header = ["method"]
    for split in splits:
        for source in ("synthetic", "real"):
            header += [f"{split} {source} AU-PRO@0.3", "@0.05", "AUROC", "verdicts"]
    header += ["fit s", "score s"]
    rows = []
    for name in specs:
        row = [name]
        every = []
        for split in splits:
            records = results.get((name, split), [])
            every += records
            for source in ("synthetic", "real"):
                subset = [r for r in records if r["source"] == source]
                mean, spread = split_summary(subset, "au_pro_30")
                row.append("-" if mean is None else f"{mean:.3f} ± {spread:.3f}")
                row.append(_fmt(split_summary(subset, "au_pro_05")[0]))
                row.append(_fmt(split_summary(subset, "cloud_auroc")[0]))
                row.append(_fmt(np.mean([verdict_accuracy(r) for r in subset]) if subset else None, 2))
        small = [r for r in every if r["case"].split("/")[2] == "4096"] or every
        row.append(_fmt(np.mean([r["fit_s"] for r in small]) if small else None, 1))
        row.append(_fmt(np.mean([r["score_s"] for r in small]) if small else None, 1))
        rows.append(row)
    return markdown_table(header, rows)


def part_table(results, specs, split):
    names = []
    for name in specs:
        for r in results.get((name, split), []):
            if r["case"] not in names:
                names.append(r["case"])
    if not names:
        return None
    rows = []
    for case_name in names:
        row = [case_name]
        for name in specs:
            values = [r["au_pro_30"] for r in results.get((name, split), []) if r["case"] == case_name]
            row.append(_fmt(float(np.mean(values)) if values else None))
        rows.append(row)
    return markdown_table(["case (part/style/points/noise)"] + list(specs), rows)


def describe(specs):
    lines = []
    for name, spec in specs.items():
        if name in BUILTIN and spec == dict(BUILTIN[name], base=name):
            continue
        lines.append(f"`{name}` = {spec['base']} with {json.dumps(spec['params'], sort_keys=True)}"
                     + (f", registration {json.dumps(spec['registration'])}" if spec.get("registration") else ""))
    return lines


def report(results, specs, args):
    splits = ("dev", "test")
    n_cases = {s: len({r["case"] for (_, sp), rs in results.items() if sp == s for r in rs}) for s in splits}
    body = []
    if args.quick:
        body.append("**Smoke run (--quick): tiny sizes, not a result.**")
    body.append(summary_table(results, specs, splits))  # the table first: the page's summary
    anchors = [a for a in ("fpfh", "btf-open3d") if a in specs]
    if "default" in specs and anchors:
        body.append("Targets (issue 18): " + " ".join(
            line for split in splits for line in target_check(results, "default", anchors, split)))
    body.append(
        f"Methods: {', '.join(specs)}. Seeds {', '.join(map(str, args.seeds))}; AU-PRO@0.3 is the mean over "
        "cases and seeds ± the standard deviation over seeds of the per-seed mean; @0.05 and cloud AUROC "
        "are means; verdicts is the share of test scans that predict_clouds judges right (the cloud "
        "threshold fitted on held-out good scans); cloud AUROC and verdicts are as recorded when a row was "
        "computed: results recorded before the current rule (without held-out quantiles) used the highest "
        "point anomaly as the cloud score (section \"verdicts\" compares both rules on both splits); fit/score s are per 4,096-point case (12 training, 12 "
        f"test scans, {args.threads} thread{'s' if args.threads != 1 else ''}). Cases: dev {n_cases['dev']}, "
        f"test {n_cases['test']} (part/style/points/noise; styles and noise levels in protocol.py).")
    body += describe(specs)
    stale = sum(r.get("code") != code_fingerprint(specs[m]["family"]) for (m, _), rs in results.items() for r in rs)
    if stale:
        total = sum(len(rs) for rs in results.values())
        body.append(f"{stale} of {total} results were computed with earlier skst3d code (`--reuse-stale`).")
    if args.note:
        body.append(args.note)
    body.append(protocol.split_summary())
    for split in splits:
        table = part_table(results, specs, split)
        if table:
            body.append(f"AU-PRO@0.3 per case, {split} (mean over seeds):\n\n{table}")
    return "\n\n".join(body)


def set_threads(threads):
    os.environ["OMP_NUM_THREADS"] = str(threads)  # before open3d's OpenMP starts
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="dev", choices=["dev", "test", "both", "none"],
                        help="what to compute (the table shows both splits, from the cache; none: only report)")
    parser.add_argument("--methods", default="default,random-teacher,fpfh,btf-open3d",
                        help="comma-separated built-in methods: " + ", ".join(BUILTIN))
    parser.add_argument("--variant", action="append", default=[], type=parse_variant, metavar="NAME=JSON",
                        help="an extra method: StudentTeacherDetector keyword arguments (see above)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1; --quick: 0)")
    parser.add_argument("--parts", default=None, help="comma-separated part names (default: all of the split)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few cases: a smoke run")
    parser.add_argument("--threads", type=int, default=1, help="torch, BLAS and OpenMP threads (default 1)")
    parser.add_argument("--refresh", action="store_true", help="recompute even when cached")
    parser.add_argument("--reuse-stale", action="store_true",
                        help="use cached results even when the skst3d code they were computed with changed")
    parser.add_argument("--cache", default=CACHE, help="cache folder")
    parser.add_argument("--section", default=None, help="RESULTS.md section (default quality; --quick: quality_quick)")
    parser.add_argument("--no-write", action="store_true", help="print only, do not write RESULTS.md")
    parser.add_argument("--note", default="", help="a sentence added to the RESULTS.md section")
    args = parser.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else ([0] if args.quick else list(protocol.DEFAULT_SEEDS))
    args.parts = args.parts.split(",") if args.parts else None
    set_threads(args.threads)

    names = [m for m in args.methods.split(",") if m]
    specs = method_specs(names, args.variant)
    if any(s["family"] == "btf" for s in specs.values()) and not open3d_available():
        dropped = [n for n, s in specs.items() if s["family"] == "btf"]
        print(f"skipping {', '.join(dropped)}: open3d is not installed (pip install skst3d[open3d])")
        specs = {n: s for n, s in specs.items() if s["family"] != "btf"}
    if not specs:
        raise SystemExit("no method to run")
    compute = {"both": ("dev", "test"), "none": ()}.get(args.split, (args.split,))
    start = time.perf_counter()
    results = collect(specs, ("dev", "test"), compute, args)
    print(f"done in {time.perf_counter() - start:.0f} s")
    body = report(results, specs, args)
    print(body)
    if not args.no_write:
        section = args.section or ("quality_quick" if args.quick else "quality")
        write_section(section, "Detection quality (dev/test protocol)", body)
    return results


if __name__ == "__main__":
    main()
