"""Command line of skst3d: ``python -m skst3d {fit,score,demo,info}`` (also the ``skst3d`` script).

``fit`` trains a detector on files of good scans and saves it; ``score`` scores new scans
with a saved detector and writes, per scan, a verdict, defect regions, a scored PLY file and
a picture, plus ``report.json`` and ``report.csv`` for all of them.

``demo`` trains one 3D-ST detector per synthetic part type on good range scans, scores
test scans with injected defects, prints AU-PRO, cloud AUROC and verdict accuracy per part
type and writes pictures and a results table into a folder. It runs offline and needs no
data set.

``info`` prints the versions, the devices, KeOps' state and the bundled teachers.

Only the public API of skst3d is used here.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import platform
import secrets
import sys
import time
import warnings

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
        # the detector's defaults (chosen on the dev split of benchmarks/protocol.py): scans
        # registered onto a reference training scan, errors compared with the training errors
        # at the same place on the part, fused with an FPFH memory bank
        register=True,
        score_normalization="location",
        fusion="fpfh",
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
        fusion="fpfh",
        smoothing=1,
        n_pictures=2,
    ),
}

#: Teacher pretraining when no teacher is bundled for d (smaller than the detector's own
#: fallback, so the demo stays within minutes); the result is kept in the output folder.
DEMO_FALLBACK_PRETRAINING = dict(n_scenes=16, n_points=2048, n_epochs=6)

DEFAULT_OUTPUT = "skst3d_demo_output"

#: Hint printed once when matplotlib, the optional ``plot`` extra, is missing.
PLOT_HINT = "pictures need matplotlib: pip install skst3d[plot]"


# --------------------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------------------- #
def _print(*args, **kwargs):
    print(*args, **kwargs, flush=True)


def _error(command, message):
    """One line on stderr, no traceback."""
    print(f"skst3d {command}: error: {message}", file=sys.stderr, flush=True)


def _usable_cores():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _write_atomically(path, write):
    """Call ``write(binary file)`` on a temporary file next to ``path``, then move it over ``path``.

    A failure (or an interruption) leaves no half-written ``path`` and no temporary file.
    """
    folder = os.path.dirname(os.path.abspath(path))
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _matplotlib_available():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _resolve_demo_teacher(config, device, output, random_state):
    """(teacher argument for the detectors, description dict)."""
    if config["teacher"] == "random":
        return "random", {"source": "random (untrained; --quick)"}
    from skst3d import TeacherPretrainer
    from skst3d.weights import n_blocks as bundled_n_blocks

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
def _demo_estimator(config, teacher, device, random_state, verbose):
    """The detector of the demo configuration."""
    from skst3d import StudentTeacherDetector

    return StudentTeacherDetector(
        teacher, k=config["k"], d=config["d"], n_blocks=config["n_blocks"], n_epochs=config["n_epochs"],
        learning_rate=config["learning_rate"], learning_rate_schedule=config["learning_rate_schedule"],
        score_normalization=config["score_normalization"], smoothing=config["smoothing"],
        registration=config["register"], fusion=config["fusion"], device=device, random_state=random_state,
        verbose=verbose,
    )


class _DemoPictures:
    """``on_part`` callback of the evaluation loop: one picture per part type."""

    def __init__(self, output, n_pictures, defect_kinds):
        self.output, self.n_pictures, self.defect_kinds = output, n_pictures, defect_kinds
        self.written = []
        self.enabled = _matplotlib_available()
        if not self.enabled:
            _print(f"(no pictures: {PLOT_HINT})")

    def __call__(self, part, model, clouds, anomaly, labels, indices):
        if not self.enabled:
            return
        from skst3d.evaluation import final_estimator
        from skst3d.plotting import plot_cloud_pairs

        final = final_estimator(model)
        picked = _pick_pictures(labels, self.n_pictures)
        predicted, titles = [], []
        for i in picked:
            judged = _judge(final, clouds[i], anomaly[i])
            verdict, flag_threshold = judged["verdict"], judged["flag_threshold"]
            predicted.append(judged["region_ids"])
            kinds = self.defect_kinds[indices[i]]
            titles.append(f"{part} test #{i}: {', '.join(kinds) if kinds else 'good'}; verdict: {verdict}")
        path = os.path.join(self.output, f"scores_{part}.png")
        plot_cloud_pairs([clouds[i] for i in picked], [anomaly[i] for i in picked], [labels[i] for i in picked],
                         titles, path, threshold=flag_threshold, predicted=predicted)  # the points flagged
        self.written.append(path)


def _judge(final, points, anomaly):
    """Verdict and defect regions of one scan from its point anomalies, as ``skst3d score`` reports them.

    A dict: ``score`` (the cloud anomaly), ``verdict``, ``regions`` (none on a scan called good,
    as the estimators' ``find_defects``), ``region_ids`` (per point, 1..n, 0 outside) and
    ``flag_threshold`` (the anomaly above which points form regions).
    """
    import numpy as np

    from skst3d.defects import cloud_scores, find_defects, region_threshold

    point_threshold, cloud_threshold = -final.offset_, -final.cloud_offset_
    score = float(-cloud_scores([-anomaly])[0])
    verdict = "defective" if score > cloud_threshold else "good"
    flag_threshold = region_threshold(point_threshold, cloud_threshold)
    regions = [] if verdict == "good" else find_defects(points, anomaly, flag_threshold, min_peak=cloud_threshold)
    region_ids = np.zeros(len(points), dtype=np.int64)
    for number, region in enumerate(regions, 1):
        region_ids[region.indices] = number
    return {"score": score, "verdict": verdict, "regions": regions, "region_ids": region_ids,
            "flag_threshold": flag_threshold}


def run_demo(output=DEFAULT_OUTPUT, quick=False, device="auto", verbose=0, random_state=0, n_epochs=None,
             n_points=None, part_types=None):
    """Run the demo (see ``python -m skst3d demo --help``); returns the results dict."""
    import torch

    import skst3d
    from skst3d.datasets import PART_TYPES, make_synthetic_parts
    from skst3d.evaluation import evaluate_part_types, format_results, mean_results

    t_start = time.perf_counter()
    config = dict(DEMO_CONFIGS["quick" if quick else "full"])
    overrides = {"n_epochs": n_epochs, "n_points": n_points, "part_types": part_types and tuple(part_types)}
    config.update({key: value for key, value in overrides.items() if value is not None})
    parts = list(config["part_types"] or PART_TYPES)
    output = os.path.abspath(output)
    os.makedirs(output, exist_ok=True)
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
    data = make_synthetic_parts(n_train=config["n_train"], n_test=config["n_test"], part_types=parts,
                                n_points=config["n_points"], random_state=random_state)
    _print(f"made {len(data.train)} training and {len(data.test)} test clouds in {time.perf_counter() - t0:.1f} s")

    pictures = _DemoPictures(output, config["n_pictures"], data.test_defect_kinds)
    estimator = _demo_estimator(config, teacher, device, random_state, verbose)
    results = evaluate_part_types(estimator, data, part_types=parts, log=_print, on_part=pictures)
    total = time.perf_counter() - t_start
    _print(f"\n{format_results(results)}\n")

    command = "python -m skst3d demo" + (" --quick" if quick else "")
    summary = {
        "skst3d_version": skst3d.__version__,
        "command": command,
        "device": resolved,
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.items()}
        | {"part_types": parts, "random_state": random_state},
        "teacher": teacher_info,
        "parts": results,
        "mean": mean_results(results),
        "total_seconds": round(total, 1),
        "pictures": [os.path.basename(p) for p in pictures.written],
    }
    json_path, md_path = os.path.join(output, "results.json"), os.path.join(output, "results.md")
    _write_atomically(json_path, lambda fh: fh.write(json.dumps(summary, indent=2).encode()))
    markdown = (
        f"# skst3d demo results\n\n{command}: skst3d {skst3d.__version__}, device {resolved}, teacher: "
        f"{teacher_info['source']}, {len(parts)} part types, {config['n_points']} points per cloud, "
        f"{config['n_epochs']} student epochs; total {total:.0f} s.\n\n{format_results(results, 'markdown')}\n"
        + "".join(f"\n![{os.path.basename(p)}]({os.path.basename(p)})" for p in pictures.written)
    )
    _write_atomically(md_path, lambda fh: fh.write(markdown.encode()))
    _print(f"wrote {', '.join(os.path.basename(p) for p in [json_path, md_path, *pictures.written])}")
    _print(f"results in {output}  (total {total:.0f} s)")
    return summary


# --------------------------------------------------------------------------------------- #
# fit and score: the file workflow
# --------------------------------------------------------------------------------------- #
def _expand(parser, paths, recursive):
    """The point-cloud files named by ``paths`` (files and folders); argparse errors if none."""
    from skst3d.io import list_point_cloud_files

    try:
        files = list_point_cloud_files(paths, recursive=recursive)
    except (OSError, ValueError, TypeError) as exc:
        parser.error(str(exc))
    if not files:
        parser.error(f"no point-cloud files in {', '.join(paths)} (extensions: see skst3d.io.POINT_CLOUD_EXTENSIONS)")
    return files


def _named(path, exc):
    """An exception's message, starting with the file name."""
    message = str(exc) or type(exc).__name__
    return message if message.startswith(path) else f"{path}: {message}"


def _final(model):
    return model.steps[-1][1] if hasattr(model, "steps") else model


def _set_estimator_params(model, **params):
    """Set ``params`` on every step of ``model`` that has them (e.g. ``n_jobs``, ``verbose``)."""
    for step in [s for _, s in model.steps] if hasattr(model, "steps") else [model]:
        if hasattr(step, "get_params"):
            own = step.get_params(deep=False)
            step.set_params(**{k: v for k, v in params.items() if k in own})


def run_fit(args, parser):
    """``skst3d fit``: train the default detector on good scans and save it (joblib)."""
    import joblib

    from skst3d import StudentTeacherDetector
    from skst3d.io import read_point_cloud

    files = _expand(parser, args.paths, args.recursive)
    model_path = args.model
    if os.path.isdir(model_path):
        parser.error(f"--model {model_path} is a folder; give a file name such as model.joblib")
    if not os.path.isdir(os.path.dirname(os.path.abspath(model_path))):
        parser.error(f"--model {model_path}: the folder {os.path.dirname(os.path.abspath(model_path))} does not exist")
    threads = args.threads or _usable_cores()
    params = {"random_state": args.random_state, "n_jobs": threads, "verbose": 1}
    if args.epochs is not None:
        params["n_epochs"] = args.epochs
    if args.no_register:
        params["registration"] = False
    detector = StudentTeacherDetector(**params)

    _print(f"reading {len(files)} scans ...")
    clouds, failed = [], 0
    for path in files:
        try:
            cloud = read_point_cloud(path)
            if len(cloud) < detector.k + 1:
                raise ValueError(f"{len(cloud)} points; a training scan needs at least k + 1 = {detector.k + 1}")
            clouds.append(cloud)
        except (OSError, ValueError, ImportError) as exc:
            _error("fit", _named(path, exc))
            failed += 1
    if failed:
        _error("fit", f"{failed} of {len(files)} training scans could not be used; no model written")
        return 1
    sizes = [len(c) for c in clouds]
    model = detector
    _print(
        f"fitting StudentTeacherDetector{'' if args.no_register else ' (scans registered)'} on {len(clouds)} scans "
        f"({min(sizes)}-{max(sizes)} points), {detector.n_epochs} epochs, {threads} threads ..."
    )
    start = time.perf_counter()
    model.fit(clouds)
    seconds = time.perf_counter() - start
    # the scoring machine chooses its own threads; no progress bars for later users
    _set_estimator_params(model, n_jobs=None, verbose=0)
    try:
        _write_atomically(model_path, lambda fh: joblib.dump(model, fh))
    except OSError as exc:
        _error("fit", f"cannot write the model to {model_path}: {exc}")
        return 1
    _print(
        f"fitted in {seconds:.1f} s (best epoch {detector.best_epoch_}); point spacing {detector.scale_:.4g}, "
        f"point threshold {-detector.offset_:.4g}, cloud threshold {-detector.cloud_offset_:.4g} (anomaly scores)"
    )
    _print(f"saved the model to {model_path}")
    return 0


def _output_stems(files):
    """A distinct output name per input file: its stem, with the extension and a number if needed."""
    stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
    if len(set(stems)) < len(stems):
        stems = [
            f"{stem}_{os.path.splitext(f)[1].lstrip('.').lower()}" if stems.count(stem) > 1 else stem
            for stem, f in zip(stems, files)
        ]
    seen = {}
    unique = []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        unique.append(stem if seen[stem] == 1 and stems.count(stem) == 1 else f"{stem}-{seen[stem]}")
    return unique


def _load_model(path):
    """The saved model as an skst3d estimator with cloud methods; raises ValueError if it is none."""
    import joblib
    from sklearn.pipeline import Pipeline as SklearnPipeline

    from skst3d.pipeline import Pipeline

    try:
        model = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means: not a model file
        raise ValueError(f"{path}: cannot load a model from it ({type(exc).__name__}: {exc})") from None
    if isinstance(model, SklearnPipeline) and not isinstance(model, Pipeline):
        model = Pipeline(model.steps, memory=model.memory)  # adds the cloud methods
    final = _final(model)
    missing = [name for name in ("score_samples", "offset_", "cloud_offset_") if not hasattr(final, name)]
    if missing:
        raise ValueError(
            f"{path}: {type(final).__name__} lacks {', '.join(missing)}; save a fitted skst3d detector "
            "(skst3d fit, or joblib.dump of a fitted detector or pipeline)"
        )
    return model


def _score_file(model, path, stem, output, pictures):
    """Score one scan and write its PLY and picture; a dict with ``scan`` or ``error``, and ``warnings``."""
    import numpy as np

    from skst3d.defects import check_point_spacing
    from skst3d.io import read_point_cloud, write_point_cloud

    final = _final(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            points = read_point_cloud(path)
            if getattr(final, "scale_", None) and getattr(final, "k", None):
                check_point_spacing([points], final.scale_, final.k, n_points=getattr(final, "n_points", None),
                                    names=[path])
            scores = model.score_samples([points])[0]
        except Exception as exc:  # noqa: BLE001 - one bad scan must not stop the others
            return {"error": _named(path, exc), "warnings": [str(w.message) for w in caught]}
    messages = [str(w.message) for w in caught]
    anomaly = -np.asarray(scores, dtype=np.float64)
    judged = _judge(final, points, anomaly)
    score, verdict, regions, region_ids = judged["score"], judged["verdict"], judged["regions"], judged["region_ids"]
    flag_threshold, cloud_threshold = judged["flag_threshold"], -final.cloud_offset_
    write_point_cloud(os.path.join(output, f"{stem}.ply"), points, anomaly=anomaly, defect=region_ids)
    if pictures:
        try:
            from skst3d.plotting import plot_scan

            fig = plot_scan(points, anomaly, threshold=flag_threshold, cloud_threshold=cloud_threshold,
                            regions=regions, verdict=verdict, score=score, title=os.path.basename(path))
            _write_atomically(os.path.join(output, f"{stem}.png"), lambda fh: fig.savefig(fh, format="png", dpi=110))
        except Exception as exc:  # noqa: BLE001 - a picture is not worth losing the scan's results
            messages.append(f"{path}: picture not written ({type(exc).__name__}: {exc})")
    scan = {
        "file": path,
        "n_points": len(points),
        "score": score,
        "verdict": verdict,
        "regions": [region.to_dict() for region in regions],
        "warnings": messages,
    }
    return {"scan": scan, "warnings": messages}


_CSV_COLUMNS = ["file", "n_points", "score", "verdict", "n_regions", "top_region_x", "top_region_y",
                "top_region_z", "top_region_peak_score", "error"]


def _csv_rows(files, results):
    for path, result in zip(files, results):
        if "error" in result:
            yield {"file": path, "verdict": "unreadable", "error": result["error"]}
            continue
        scan = result["scan"]
        row = {"file": path, "n_points": scan["n_points"], "score": repr(scan["score"]), "verdict": scan["verdict"],
               "n_regions": len(scan["regions"])}
        if scan["regions"]:
            top = scan["regions"][0]
            row.update(zip(("top_region_x", "top_region_y", "top_region_z"), map(repr, top["centroid"])))
            row["top_region_peak_score"] = repr(top["peak_score"])
        yield row


def run_score(args, parser):
    """``skst3d score``: score scans with a saved model; report, scored PLY files, pictures."""
    import skst3d

    if not os.path.isfile(args.model):
        parser.error(f"MODEL {args.model}: no such file")
    files = _expand(parser, args.paths, args.recursive)
    output = args.output
    if os.path.exists(output) and not os.path.isdir(output):
        parser.error(f"--output {output} is a file, not a folder")
    stems = _output_stems(files)
    inputs = {os.path.realpath(f) for f in files}
    for stem in stems:
        for extension in (".ply", ".png"):
            target = os.path.join(output, stem + extension)
            if os.path.realpath(target) in inputs:
                parser.error(f"--output {output} would overwrite the input scan {target}; choose another folder")
    try:
        model = _load_model(args.model)
    except ValueError as exc:
        _error("score", str(exc))
        return 1
    os.makedirs(output, exist_ok=True)
    pictures = not args.no_pictures and _matplotlib_available()
    if not args.no_pictures and not pictures:
        print(f"skst3d score: note: {PLOT_HINT}; writing everything else", file=sys.stderr, flush=True)
    jobs = args.jobs
    threads = args.threads or max(1, _usable_cores() // jobs)
    _set_estimator_params(model, n_jobs=threads, verbose=0)
    final = _final(model)
    threshold = float(-final.cloud_offset_)
    _print(f"scoring {len(files)} scan{'s' if len(files) != 1 else ''} with {args.model} ({jobs} at a time, "
           f"{threads} thread{'s' if threads != 1 else ''} each); "
           f"cloud threshold {threshold:.4g}")
    if jobs == 1:
        results = (_score_file(model, path, stem, output, pictures) for path, stem in zip(files, stems))
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=jobs, return_as="generator")(
            delayed(_score_file)(model, path, stem, output, pictures) for path, stem in zip(files, stems)
        )
    collected = []
    for number, (path, result) in enumerate(zip(files, results), 1):
        collected.append(result)
        for message in result["warnings"]:
            print(f"skst3d score: warning: {message}", file=sys.stderr, flush=True)
        if "error" in result:
            _error("score", result["error"])
            continue
        scan = result["scan"]
        _print(f"[{number}/{len(files)}] {path}: {scan['verdict']} (score {scan['score']:.4g}), "
               f"{len(scan['regions'])} defect region{'s' if len(scan['regions']) != 1 else ''}")

    report = {
        "model": args.model,
        "threshold": threshold,
        "point_threshold": float(-final.offset_),
        "skst3d_version": skst3d.__version__,
        "scans": [r["scan"] for r in collected if "scan" in r],
        "errors": [{"file": path, "error": r["error"]} for path, r in zip(files, collected) if "error" in r],
    }
    _write_atomically(os.path.join(output, "report.json"),
                      lambda fh: fh.write(json.dumps(report, indent=2).encode()))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=_CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_csv_rows(files, collected))
    _write_atomically(os.path.join(output, "report.csv"), lambda fh: fh.write(text.getvalue().encode()))
    verdicts = [s["verdict"] for s in report["scans"]]
    _print(f"{verdicts.count('good')} good, {verdicts.count('defective')} defective, {len(report['errors'])} "
           f"unreadable; report in {os.path.join(output, 'report.json')} and report.csv")
    return 1 if report["errors"] else 0


# --------------------------------------------------------------------------------------- #
# info
# --------------------------------------------------------------------------------------- #
def run_info(check_keops=False):
    """Print versions, devices, KeOps state and bundled teachers."""
    from importlib import metadata

    import torch

    import skst3d
    from skst3d import geometry, weights

    _print(f"skst3d {skst3d.__version__} ({os.path.dirname(os.path.abspath(skst3d.__file__))})")
    _print(f"python {platform.python_version()} on {platform.platform()}, {os.cpu_count()} CPUs")
    for name in ("torch", "numpy", "scipy", "scikit-learn", "joblib", "pykeops", "matplotlib", "trimesh", "tifffile"):
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "not installed"
        _print(f"  {name:13s} {version}")

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
        _print(f"  cache folder  {geometry.keops_build_folder()}  (KEOPS_CACHE_FOLDER moves it)")
    except Exception as exc:  # noqa: BLE001 - informative only
        _print(f"  cache folder  unknown ({exc})")
    if check_keops:
        import logging

        logging.basicConfig(level=logging.INFO, format="  %(message)s")
        for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
            start = time.perf_counter()
            ok = geometry.keops_available(dev)
            _print(f"  usable on {dev:4s} {'yes' if ok else 'no'} (probe {time.perf_counter() - start:.1f} s)")
    else:
        _print("  usable        not probed (skst3d info --check-keops compiles a tiny formula, ~10 s cold)")

    _print("bundled teachers:")
    found = weights.available()
    if not found:
        _print("  none (detectors with teacher=None pretrain one on built-in scenes)")
    for d, k in found:
        meta = weights.metadata(d, k) or {}
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
    sub = parser.add_subparsers(dest="command", metavar="{fit,score,demo,info}")
    fit = sub.add_parser(
        "fit",
        help="train a detector on files of good scans and save it",
        description="Train StudentTeacherDetector (its defaults, the bundled teacher) on good scans and save it "
        "with joblib. FILES_OR_DIRS are point-cloud files (PLY, PCD, XYZ/TXT/PTS, CSV, NPY/NPZ, STL/OBJ/OFF "
        "vertices) and folders of them, in any unit.",
    )
    fit.add_argument("paths", nargs="+", metavar="FILES_OR_DIRS", help="good scans: files and folders")
    fit.add_argument("--model", "-m", required=True, metavar="PATH", help="where to save the model (e.g. model.joblib)")
    fit.add_argument("--epochs", type=_positive_int, default=None, help="student epochs (default: the detector's, 100)")
    fit.add_argument("--random-state", type=int, default=0, metavar="S", help="random seed (default: 0)")
    fit.add_argument("--threads", type=_positive_int, default=None, metavar="T",
                     help="CPU threads (default: the number of usable cores)")
    fit.add_argument("--no-register", action="store_true",
                     help="do not register the scans onto a reference scan (the detector's default does): for "
                     "scans already in one frame, such as fixtured parts")
    fit.add_argument("--recursive", "-r", action="store_true", help="also read the sub-folders of folders")
    fit.set_defaults(handler=run_fit, subparser=fit)

    score = sub.add_parser(
        "score",
        help="score scans with a saved model: verdicts, defect regions, scored PLY files, pictures",
        description="Score every scan with a model saved by 'skst3d fit' and write into DIR: report.json and "
        "report.csv (one row per scan: score, higher = more anomalous, verdict, defect regions in the scan's "
        "units), <stem>.ply (the scan with 'anomaly' and 'defect' (region number, 0 = none) fields) and "
        "<stem>.png. A scan that cannot be read is reported on stderr and the others are still scored "
        "(exit status 1). Load only model files you trust (they are pickles).",
    )
    score.add_argument("model", metavar="MODEL", help="a model file written by 'skst3d fit'")
    score.add_argument("paths", nargs="+", metavar="FILES_OR_DIRS", help="scans to score: files and folders")
    score.add_argument("--output", "-o", required=True, metavar="DIR", help="output folder (created if needed)")
    score.add_argument("--jobs", "-j", type=_positive_int, default=1, help="scans scored in parallel (default: 1)")
    score.add_argument("--threads", type=_positive_int, default=None, metavar="T",
                       help="CPU threads per scan (default: usable cores / jobs); results repeat bit for bit at "
                       "a fixed value, whatever --jobs")
    score.add_argument("--no-pictures", action="store_true", help="write no PNG pictures")
    score.add_argument("--recursive", "-r", action="store_true", help="also read the sub-folders of folders")
    score.set_defaults(handler=run_score, subparser=score)

    demo = sub.add_parser(
        "demo",
        help="train one detector per synthetic part type and report AU-PRO (offline, a few minutes)",
        description="Train one 3D-ST detector per synthetic part type on good range scans, score test scans with "
        "injected defects, print AU-PRO@0.3, AU-PRO@0.05, cloud AUROC and verdict accuracy per part type, and "
        "write pictures and results.json/results.md into the output folder.",
    )
    demo.add_argument("--output", "-o", default=DEFAULT_OUTPUT, metavar="DIR",
                      help=f"output folder (default: ./{DEFAULT_OUTPUT})")
    demo.add_argument("--quick", action="store_true", help="tiny sizes and an untrained teacher (seconds; for tests)")
    demo.add_argument("--device", default="auto", help="'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1', ...")
    demo.add_argument("--epochs", type=_positive_int, default=None, help=f"student epochs (default: {DEMO_CONFIGS['full']['n_epochs']}, --quick {DEMO_CONFIGS['quick']['n_epochs']})")
    demo.add_argument("--n-points", type=_positive_int, default=None, help=f"points per cloud (default: {DEMO_CONFIGS['full']['n_points']}, --quick {DEMO_CONFIGS['quick']['n_points']})")
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
    if args.command in ("fit", "score"):
        return args.handler(args, args.subparser)
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
