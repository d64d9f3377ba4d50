"""Command line of skst3d: ``python -m skst3d {demo,info}`` (also the ``skst3d`` script).

``demo`` trains one 3D-ST detector per synthetic part type on good range scans, scores
test scans with injected defects, prints AU-PRO and cloud AUROC per part type and writes
pictures and a results table into a folder. It runs offline and needs no data set.

``info`` prints the versions, the devices, KeOps' state and the bundled teachers.

Only the public API of skst3d is used here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

__all__ = ["main"]

#: Demo sizes. "full" finishes in a few minutes on a 2-core CPU with the bundled teacher;
#: "quick" runs in seconds (tests) with an untrained teacher.
DEMO_CONFIGS = {
    "full": dict(
        part_types=None,  # all of skst3d.datasets.PART_TYPES
        n_train=10,
        n_test=10,
        # the density of benchmarks/bench_quality.py; with 2,048 points the demo's plate
        # scored 0.73 AU-PRO@0.3, with 4,096 0.90
        n_points=4096,
        k=32,
        d=64,
        n_blocks=None,
        # measured on the synthetic parts: with a few training clouds, a higher learning rate
        # decayed along a cosine fits the teacher far better than the paper's 1e-3
        n_epochs=60,
        learning_rate=1e-2,
        learning_rate_schedule="cosine",
        teacher="bundled",
        # scans are registered to the first training scan (the parts lie in poses varying by
        # +-30 degrees; registration raised AU-PRO in benchmarks/bench_quality.py)
        register=True,
        # registered scans share one frame, so each point's error is compared with the training
        # errors at the same place on the part (border points err more everywhere)
        score_normalization="location",
        # one pass of averaging the z-scores over each point and its k neighbours: measured in
        # benchmarks/RESULTS.md (section smoothed_k32_*), it raised mean AU-PRO in this set-up
        smoothing=1,
        n_pictures=4,
    ),
    "quick": dict(
        part_types=("plate", "flange"),
        n_train=3,
        n_test=4,
        n_points=384,
        k=8,
        d=16,
        n_blocks=1,
        n_epochs=2,
        learning_rate=1e-3,
        learning_rate_schedule="constant",
        teacher="random",
        register=True,
        score_normalization="location",
        smoothing=1,
        n_pictures=2,
    ),
}

#: Teacher pretraining when no teacher is bundled for d (smaller than the detector's own
#: fallback, so the demo stays within minutes); the result is kept in the output folder.
DEMO_FALLBACK_PRETRAINING = dict(n_scenes=16, n_points=2048, n_epochs=6)

DEFAULT_OUTPUT = "skst3d_demo_output"


# --------------------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------------------- #
def _print(*args, **kwargs):
    print(*args, **kwargs, flush=True)


def _format_table(header, rows):
    """Plain-text table, columns aligned, numbers with 3 decimals."""

    def fmt(v):
        if isinstance(v, float):
            return "nan" if v != v else f"{v:.3f}"
        return str(v)

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    sep = "  "
    lines = [sep.join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append(sep.join("-" * w for w in widths))
    for r in cells:
        lines.append(sep.join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    return "\n".join(lines)


def _markdown_table(header, rows):
    def fmt(v):
        if isinstance(v, float):
            return "nan" if v != v else f"{v:.3f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _safe(metric, *args, **kwargs):
    """A metric value, or NaN when it is undefined (e.g. no defective test cloud)."""
    try:
        return float(metric(*args, **kwargs))
    except ValueError:
        return float("nan")


def _resolve_demo_teacher(config, device, output, random_state):
    """(teacher argument for the detectors, description dict)."""
    if config["teacher"] == "random":
        return "random", {"source": "random (untrained; --quick)"}
    from skst3d import TeacherPretrainer
    from skst3d.pretrain import bundled_n_blocks

    d = config["d"]
    try:
        teacher = TeacherPretrainer.from_pretrained(d=d, device=device)
        meta = getattr(teacher, "metadata_", {}) or {}
        return teacher, {"source": f"bundled teacher_d{d}_k32", "epochs": meta.get("epochs"), "best_loss": meta.get("best_loss")}
    except FileNotFoundError:
        pass
    cached = os.path.join(output, f"demo_teacher_d{d}_k{config['k']}.pt")
    if os.path.exists(cached):
        _print(f"no bundled teacher for d={d}; using the one pretrained by an earlier demo run: {cached}")
        return TeacherPretrainer.load(cached, device=device), {"source": f"pretrained by an earlier demo run ({cached})"}
    from skst3d.datasets import make_pretraining_scenes

    fb = DEMO_FALLBACK_PRETRAINING
    _print(
        f"no bundled teacher for d={d}: pretraining a small one on {fb['n_scenes']} built-in scenes of "
        f"{fb['n_points']} points for {fb['n_epochs']} epochs (kept in {cached} for later runs) ..."
    )
    start = time.perf_counter()
    scenes = make_pretraining_scenes(fb["n_scenes"], n_points=fb["n_points"], random_state=random_state)
    teacher = TeacherPretrainer(
        d=d, k=config["k"], n_blocks=config["n_blocks"] or bundled_n_blocks(d), n_epochs=fb["n_epochs"], device=device, random_state=random_state
    ).fit(scenes)
    teacher.save(cached, note="skst3d demo fallback teacher")
    seconds = time.perf_counter() - start
    _print(f"  teacher pretrained in {seconds:.1f} s")
    return teacher, {"source": "pretrained by the demo (no bundled teacher)", "seconds": round(seconds, 2), **fb}


def _pick_pictures(labels, n):
    """Indices of test clouds to draw: defective ones first, then at least one good one."""
    bad = [i for i, lab in enumerate(labels) if lab.any()]
    good = [i for i, lab in enumerate(labels) if not lab.any()]
    n_good = 1 if good and n > 1 else 0
    picked = bad[: n - n_good] + good[:n_good]
    picked += [i for i in range(len(labels)) if i not in picked][: n - len(picked)]
    return sorted(picked)


# --------------------------------------------------------------------------------------- #
# demo
# --------------------------------------------------------------------------------------- #
def run_demo(output=DEFAULT_OUTPUT, quick=False, device="auto", verbose=0, random_state=0, n_epochs=None,
             n_points=None, part_types=None):
    """Run the demo (see ``python -m skst3d demo --help``); returns the results dict."""
    import numpy as np

    import skst3d
    from sklearn.pipeline import make_pipeline

    from skst3d import StudentTeacherDetector
    from skst3d.datasets import PART_TYPES, make_synthetic_parts
    from skst3d.metrics import au_pro, cloud_roc_auc
    from skst3d.registration import RigidRegistration

    t_start = time.perf_counter()
    config = dict(DEMO_CONFIGS["quick" if quick else "full"])
    if n_epochs is not None:
        config["n_epochs"] = int(n_epochs)
    if n_points is not None:
        config["n_points"] = int(n_points)
    if part_types is not None:
        config["part_types"] = tuple(part_types)
    parts = list(config["part_types"] or PART_TYPES)
    output = os.path.abspath(output)
    os.makedirs(output, exist_ok=True)

    import torch

    resolved = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    _print(f"skst3d {skst3d.__version__} demo{' (--quick)' if quick else ''}: 3D Student-Teacher on synthetic parts")
    _print(
        f"device {resolved} (torch {torch.__version__}, {torch.get_num_threads()} threads); "
        f"{len(parts)} part types x ({config['n_train']} train + {config['n_test']} test) clouds of "
        f"{config['n_points']} points; k={config['k']}, d={config['d']}, {config['n_epochs']} student epochs"
        + ("; scans registered to the first training scan" if config.get("register") else "")
        + (f"; scores {config['score_normalization']}-normalised" if config["score_normalization"] != "none" else "")
        + (f", smoothed ({config['smoothing']} pass)" if config["smoothing"] else "")
    )
    _print(f"output folder: {output}")

    teacher, teacher_info = _resolve_demo_teacher(config, device, output, random_state)
    _print(f"teacher: {teacher_info['source']}")

    t0 = time.perf_counter()
    data = make_synthetic_parts(
        n_train=config["n_train"], n_test=config["n_test"], part_types=parts, n_points=config["n_points"],
        random_state=random_state,
    )
    _print(f"made {len(data.train)} training and {len(data.test)} test clouds in {time.perf_counter() - t0:.1f} s")

    try:
        from skst3d.plotting import plot_cloud_pairs
    except ImportError:  # pragma: no cover - plotting itself imports lazily
        plot_cloud_pairs = None

    results = {}
    pictures = []
    pictures_skipped = None
    train_types = np.asarray(data.train_part_types)
    test_types = np.asarray(data.test_part_types)
    for number, part in enumerate(parts, 1):
        train = [data.train[i] for i in np.flatnonzero(train_types == part)]
        test_idx = np.flatnonzero(test_types == part)
        test = [data.test[i] for i in test_idx]
        labels = [data.test_labels[i] for i in test_idx]
        n_bad = sum(bool(lab.any()) for lab in labels)
        _print(f"[{number}/{len(parts)}] {part}: training on {len(train)} good clouds ...")
        t0 = time.perf_counter()
        detector = StudentTeacherDetector(
            teacher, k=config["k"], d=config["d"], n_blocks=config["n_blocks"], n_epochs=config["n_epochs"],
            learning_rate=config["learning_rate"], learning_rate_schedule=config["learning_rate_schedule"],
            score_normalization=config["score_normalization"], smoothing=config["smoothing"], device=device,
            random_state=random_state, verbose=verbose,
        )
        model = detector
        if config.get("register"):
            model = make_pipeline(RigidRegistration(random_state=random_state), detector)
        model.fit(train)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        anomaly = [-s for s in model.score_samples(test)]
        score_s = time.perf_counter() - t0
        row = {
            "n_train": len(train),
            "n_test": len(test),
            "n_defective": n_bad,
            "au_pro_0.3": _safe(au_pro, labels, anomaly, integration_limit=0.3),
            "au_pro_0.05": _safe(au_pro, labels, anomaly, integration_limit=0.05),
            "cloud_auroc": _safe(cloud_roc_auc, labels, anomaly),
            "best_epoch": int(detector.best_epoch_),
            "fit_seconds": round(fit_s, 2),
            "score_seconds": round(score_s, 2),
        }
        results[part] = row
        _print(
            f"[{number}/{len(parts)}] {part}: fit {fit_s:.1f} s, scored {len(test)} clouds ({n_bad} defective) in {score_s:.1f} s: "
            f"AU-PRO@0.3 {row['au_pro_0.3']:.3f}, AU-PRO@0.05 {row['au_pro_0.05']:.3f}, cloud AUROC {row['cloud_auroc']:.3f}"
        )
        if plot_cloud_pairs is not None and pictures_skipped is None:
            picked = _pick_pictures(labels, config["n_pictures"])
            titles = []
            for i in picked:
                kinds = data.test_defect_kinds[test_idx[i]]
                titles.append(f"{part} test #{i}: " + (", ".join(kinds) if kinds else "good"))
            path = os.path.join(output, f"scores_{part}.png")
            try:
                plot_cloud_pairs([test[i] for i in picked], [anomaly[i] for i in picked], [labels[i] for i in picked],
                                 titles, path)
                pictures.append(path)
            except ImportError as exc:
                pictures_skipped = str(exc)
                _print(f"  (no pictures: {exc})")

    metrics = ["au_pro_0.3", "au_pro_0.05", "cloud_auroc"]
    mean = {m: float(np.nanmean([results[p][m] for p in parts])) for m in metrics}
    header = ["part type", "AU-PRO@0.3", "AU-PRO@0.05", "cloud AUROC", "fit s", "score s"]
    rows = [[p, results[p]["au_pro_0.3"], results[p]["au_pro_0.05"], results[p]["cloud_auroc"],
             f"{results[p]['fit_seconds']:.1f}", f"{results[p]['score_seconds']:.1f}"] for p in parts]
    rows.append(["mean", mean["au_pro_0.3"], mean["au_pro_0.05"], mean["cloud_auroc"],
                 f"{np.mean([results[p]['fit_seconds'] for p in parts]):.1f}",
                 f"{np.mean([results[p]['score_seconds'] for p in parts]):.1f}"])
    total = time.perf_counter() - t_start
    _print()
    _print(_format_table(header, rows))
    _print()

    summary = {
        "skst3d_version": skst3d.__version__,
        "command": "python -m skst3d demo" + (" --quick" if quick else ""),
        "device": resolved,
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()} | {"part_types": parts,
                                                                                              "random_state": random_state},
        "teacher": teacher_info,
        "parts": results,
        "mean": mean,
        "total_seconds": round(total, 1),
        "pictures": [os.path.basename(p) for p in pictures],
    }
    json_path = os.path.join(output, "results.json")
    with open(json_path, "w") as fh:
        json.dump(summary, fh, indent=2, allow_nan=True)
    md_path = os.path.join(output, "results.md")
    with open(md_path, "w") as fh:
        fh.write(f"# skst3d demo results\n\n{summary['command']}: skst3d {skst3d.__version__}, device {resolved}, "
                 f"teacher: {teacher_info['source']}, {len(parts)} part types, {config['n_points']} points per cloud, "
                 f"{config['n_epochs']} student epochs; total {total:.0f} s.\n\n")
        fh.write(_markdown_table(header, rows) + "\n")
        if pictures:
            fh.write("\n" + "\n".join(f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in pictures) + "\n")
    _print(f"wrote {', '.join(os.path.basename(p) for p in [json_path, md_path, *pictures])}")
    _print(f"results in {output}  (total {total:.0f} s)")
    return summary


# --------------------------------------------------------------------------------------- #
# info
# --------------------------------------------------------------------------------------- #
def run_info(check_keops=False):
    """Print versions, devices, KeOps state and bundled teachers."""
    from importlib import metadata

    import skst3d

    _print(f"skst3d {skst3d.__version__} ({os.path.dirname(os.path.abspath(skst3d.__file__))})")
    _print(f"python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPUs")
    for name in ("torch", "numpy", "scipy", "scikit-learn", "joblib", "pykeops", "matplotlib", "trimesh", "tifffile"):
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "not installed"
        _print(f"  {name:13s} {version}")

    import torch

    _print("devices:")
    _print(f"  cpu           {torch.get_num_threads()} torch threads")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            _print(f"  cuda:{i}        {props.name}, {props.total_memory / 2**30:.1f} GiB")
    else:
        _print("  cuda          not available (device='auto' uses the CPU)")

    _print("KeOps:")
    try:
        from skst3d import _keops
    except ImportError:  # pragma: no cover - the module is part of skst3d
        _keops = None
    if _keops is None:
        _print("  skst3d._keops not found")
    else:
        _print(f"  cache folder  {_keops.cache_root()}  (KEOPS_CACHE_FOLDER overrides)")
        try:
            _print(f"  build folder  {_keops.build_folder()}")
        except Exception as exc:  # pragma: no cover - informative only
            _print(f"  build folder  unknown ({exc})")
        if check_keops:
            import logging

            logging.basicConfig(level=logging.INFO, format="  %(message)s")
            for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
                start = time.perf_counter()
                ok = _keops.keops_available(dev)
                _print(f"  usable on {dev:4s} {'yes' if ok else 'no'} (probe {time.perf_counter() - start:.1f} s)")
        else:
            _print("  usable        not probed (skst3d info --check-keops compiles a tiny formula, ~10 s cold)")

    _print("bundled teachers:")
    from skst3d import TeacherPretrainer

    found = TeacherPretrainer.available_pretrained()
    if not found:
        _print("  none (detectors with teacher=None pretrain one on built-in scenes)")
    from skst3d.pretrain import WEIGHTS_DIR

    for d, k in found:
        meta_path = os.path.join(WEIGHTS_DIR, f"teacher_d{d}_k{k}.pt.json")
        extra = ""
        if os.path.exists(meta_path):
            with open(meta_path) as fh:
                meta = json.load(fh)
            extra = ", ".join(f"{key}={meta[key]}" for key in ("n_blocks", "epochs", "best_loss", "skst3d_version") if key in meta)
        _print(f"  d={d:<4d} k={k:<3d} {extra}")
    return 0


# --------------------------------------------------------------------------------------- #
# entry point
# --------------------------------------------------------------------------------------- #
def _parser():
    parser = argparse.ArgumentParser(
        prog="skst3d" if os.path.basename(sys.argv[0]) == "skst3d" else "python -m skst3d",
        description="3D Student-Teacher (3D-ST) point-cloud anomaly detection.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{demo,info}")
    demo = sub.add_parser(
        "demo",
        help="train one detector per synthetic part type and report AU-PRO (offline, a few minutes)",
        description="Train one 3D-ST detector per synthetic part type on good range scans, score test scans with "
        "injected defects, print AU-PRO@0.3, AU-PRO@0.05 and cloud AUROC per part type, and write pictures "
        "and results.json/results.md into the output folder.",
    )
    demo.add_argument("--output", "-o", default=DEFAULT_OUTPUT, metavar="DIR",
                      help=f"output folder (default: ./{DEFAULT_OUTPUT})")
    demo.add_argument("--quick", action="store_true", help="tiny sizes and an untrained teacher (seconds; for tests)")
    demo.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1', ...")
    demo.add_argument("--epochs", type=int, default=None, help=f"student epochs (default: {DEMO_CONFIGS['full']['n_epochs']}, --quick {DEMO_CONFIGS['quick']['n_epochs']})")
    demo.add_argument("--n-points", type=int, default=None, help=f"points per cloud (default: {DEMO_CONFIGS['full']['n_points']}, --quick {DEMO_CONFIGS['quick']['n_points']})")
    demo.add_argument("--parts", nargs="+", default=None, metavar="PART",
                      help="part types (default: all; plate bracket rod flange panel)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument("--threads", type=int, default=None,
                      help="CPU threads for torch (default: torch's choice; 1 is best on a busy machine)")
    demo.add_argument("--verbose", "-v", action="count", default=0, help="progress bar per student epoch")
    info = sub.add_parser("info", help="versions, devices, KeOps cache folder, bundled teachers")
    info.add_argument("--check-keops", action="store_true", help="probe KeOps on each device (may compile, ~10 s)")
    return parser


def main(argv=None):
    """Entry point of ``python -m skst3d`` and the ``skst3d`` script; returns an exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.threads is not None:
            import torch

            torch.set_num_threads(max(1, args.threads))
        run_demo(output=args.output, quick=args.quick, device=args.device, verbose=args.verbose,
                 random_state=args.seed, n_epochs=args.epochs, n_points=args.n_points, part_types=args.parts)
        return 0
    if args.command == "info":
        return run_info(check_keops=args.check_keops)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
