"""Everything skst3d needs checked on a GPU, in one bounded run (the paper's Table 3 included).

Phases, each bounded in time and recorded in ``OUT/gpu_check.json`` as it finishes (a failed
phase is recorded and the next one runs):

1. ``environment``: torch, CUDA, the GPU, the compilers KeOps needs.
2. ``keops``: KeOps compiles and runs on the device (probed in a child process first, so a
   crash or a hang in the CUDA compiler cannot end the run; without KeOps every later phase
   uses the torch backend and says so).
3. ``tests``: ``pytest -m cuda`` (while the pretraining scenes are built on the CPU cores).
4. ``exactness``: KeOps kNN graphs against scipy's k-d tree on the CPU, and KeOps Chamfer
   distances against the exact torch ones in float64, at three sizes.
5. ``scaling``: the paper's Table 3 grid (n 16k-256k, d 32-128, k 16-64): inference (kNN +
   teacher + student + anomaly), a student training step and a pretraining step, time and
   peak memory; plus the default detector's ``score_samples`` end to end.
6. ``pretraining``: the rest of the time budget pretrains the paper's teacher (4 residual
   blocks, d=64, k=32, scenes of 64,000 points) with ``benchmarks/pretrain_teachers.py``,
   resuming from ``--resume-from`` and writing checkpoints to OUT.

``--dry-run`` runs every phase at small sizes on whatever device there is (the CPU here),
so the script is tested before GPU time is spent on it.

    bash benchmarks/gpu_check.sh OUT                 # on the GPU machine (installs pykeops)
    python benchmarks/gpu_check.py --out OUT --dry-run --budget 120
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

CHECKPOINT = "paper_teacher_d64_k32_b4.pt"  # pretrain_teachers.py adds .last.pt for resuming

FULL = dict(
    exact_sizes=(4096, 65536, 262144),
    chamfer_sizes=((16, 1024, 2048), (64, 1024, 2048), (256, 1024, 4096)),
    grid=[("n", n, 64, 32) for n in (16000, 32000, 64000, 128000, 256000)]
    + [("d", 64000, d, 32) for d in (32, 128)]
    + [("k", 64000, 64, k) for k in (16, 64)],
    detector=dict(n_clouds=8, n_points=64000, n_epochs=5),
    pretraining=dict(points=64000, scenes=120, validation_scenes=8, chunk_epochs=2),
)
DRY = dict(
    exact_sizes=(512, 2048, 9000),
    chamfer_sizes=((4, 64, 128), (8, 64, 256), (16, 128, 256)),
    grid=[("n", n, 16, 8) for n in (1024, 2048)] + [("d", 1024, 32, 8), ("k", 1024, 16, 16)],
    detector=dict(n_clouds=4, n_points=2048, n_epochs=2),
    pretraining=dict(points=1024, scenes=6, validation_scenes=2, chunk_epochs=1),
)


class Run:
    """The JSON record of a run, rewritten after every phase."""

    def __init__(self, out, budget):
        self.out = out
        self.start = time.perf_counter()
        self.deadline = self.start + budget
        self.record = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "budget_s": budget, "phases": {}}

    def left(self):
        return self.deadline - time.perf_counter()

    def phase(self, name, fn, *args, min_left=0.0):
        if self.record.get("dry_run"):
            min_left /= 4  # small sizes: phases are quick
        if self.left() < min_left:
            self.record["phases"][name] = {"status": "skipped", "reason": f"{self.left():.0f} s left"}
            self.save()
            return None
        print(f"\n=== {name} ({self.left():.0f} s left)", flush=True)
        began = time.perf_counter()
        try:
            result = fn(*args)
            entry = {"status": "ok", **(result or {})}
        except Exception as exc:  # record and go on: one phase must not cost the others
            traceback.print_exc()
            entry = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        entry["seconds"] = round(time.perf_counter() - began, 1)
        self.record["phases"][name] = entry
        self.save()
        print(f"--- {name}: {entry['status']} in {entry['seconds']} s", flush=True)
        return entry

    def save(self):
        self.record["elapsed_s"] = round(time.perf_counter() - self.start, 1)
        tmp = os.path.join(self.out, "gpu_check.json.tmp")
        with open(tmp, "w") as fh:
            json.dump(self.record, fh, indent=1, default=str)
        os.replace(tmp, os.path.join(self.out, "gpu_check.json"))


def environment():
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "torch_cuda": torch.version.cuda,
        "cpu_cores": os.cpu_count(),
        "cxx": shutil.which(os.environ.get("CXX", "g++")),
        "nvcc": shutil.which("nvcc"),
        "CUDA_HOME": os.environ.get("CUDA_HOME"),
        "KEOPS_CACHE_FOLDER": os.environ.get("KEOPS_CACHE_FOLDER"),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1))
    try:
        import pykeops  # noqa: F401 (only its presence and version matter here)
        from importlib import metadata

        info["pykeops"] = metadata.version("pykeops")
    except Exception as exc:
        info["pykeops"] = f"not importable: {exc}"
    print(json.dumps(info, indent=1), flush=True)
    return info


_PROBE = """
import sys, time, torch
from skst3d.geometry import chamfer_distance, knn_graph
device = sys.argv[1]
points = torch.rand(20000, 3, device=device)
start = time.perf_counter()
idx, dist = knn_graph(points, 8, backend="keops")
pred = torch.rand(2, 64, 3, device=device)
chamfer_distance(pred, [points[:100], points[100:300]], backend="keops")
print("compiled and ran in", round(time.perf_counter() - start, 1), "s")
"""


def keops(device, timeout):
    """Probe KeOps in a child process; without it, make this process use the torch backends."""
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE, device], capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT)
        ok, tail = proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired as exc:
        ok, tail = False, f"timed out after {timeout} s: {(exc.stdout or b'')[-2000:]!r}"
    print(tail, flush=True)
    if not ok:
        # An import that fails makes skst3d fall back to torch cleanly, as on a machine without KeOps.
        sys.modules["pykeops"] = None
    return {"keops_usable": ok, "output": tail[-1500:]}


def run_tests(timeout):
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "-rs",
           "tests/test_geometry.py", "tests/test_detector.py", "tests/test_pretrain.py", "tests/test_gpu.py"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        tail, code = (proc.stdout + proc.stderr)[-6000:], proc.returncode
    except subprocess.TimeoutExpired as exc:
        tail, code = f"timed out after {timeout} s: {(exc.stdout or b'')[-4000:]!r}", -1
    print(tail, flush=True)
    import re

    summary = [line for line in tail.splitlines() if re.search(r"\d+ (passed|failed|skipped|errors?|deselected)", line)]
    return {"returncode": code, "summary": summary[-1] if summary else tail[-300:], "output": tail[-2500:]}


def exactness(device, sizes, chamfer_sizes, use_keops):
    """KeOps on the device against exact CPU references."""
    import numpy as np
    import torch

    from bench_scaling import surface
    from skst3d.geometry import chamfer_distance, knn_graph

    backend = "keops" if use_keops else "torch"
    knn_rows = []
    for n in sizes:
        points = surface(n, seed=n)
        ref_idx, ref_dist = knn_graph(points.double(), 32, backend="kdtree")
        start = time.perf_counter()
        idx, dist = knn_graph(points.to(device), 32, backend=backend)
        seconds = time.perf_counter() - start
        same_sets = (idx.cpu().sort(1).values == ref_idx.sort(1).values).all(1).float().mean()
        knn_rows.append({
            "n": n, "backend": backend, "first_call_s": round(seconds, 3),
            "max_distance_error": float((dist.cpu().double() - ref_dist).abs().max()),
            "rows_with_identical_neighbour_sets": float(same_sets),
        })
        print(knn_rows[-1], flush=True)
    chamfer_rows = []
    rng = np.random.default_rng(0)
    for batch, m, size in chamfer_sizes:
        pred = torch.tensor(rng.normal(size=(batch, m, 3)))
        targets = [torch.tensor(rng.normal(size=(int(rng.integers(size // 2, size + 1)), 3))) for _ in range(batch)]
        exact = chamfer_distance(pred, targets, backend="torch")
        got = chamfer_distance(pred.float().to(device), [t.float().to(device) for t in targets], backend=backend)
        relative = ((got.cpu().double() - exact).abs() / exact).max()
        chamfer_rows.append({"pairs": batch, "m": m, "target_points": size, "backend": backend,
                             "max_relative_error_vs_float64": float(relative)})
        print(chamfer_rows[-1], flush=True)
    return {"knn": knn_rows, "chamfer": chamfer_rows}


def scaling(device, grid, detector_sizes, run):
    """Table 3 on the device, and the default detector end to end."""
    import torch

    from _results import markdown_table
    from bench_scaling import PAPER, measure, surface, timed
    from skst3d import StudentTeacherDetector
    from skst3d.geometry import knn_graph

    dev = torch.device(device)
    rows = []
    margin = 15 if run.record.get("dry_run") else 60
    for axis, n, d, k in grid:
        if run.left() < margin:
            print("scaling: stopping the grid early to leave time for the rest", flush=True)
            break
        row = measure(n, d, k, dev)
        points = surface(n).to(dev)
        row["knn_s"] = timed(lambda: knn_graph(points, k), dev)
        paper = PAPER.get((axis, {"n": n, "d": d, "k": k}[axis])) if n in (16000, 32000, 64000, 128000) else None
        rows.append({"varied": axis, "n": n, "d": d, "k": k, **row,
                     **({"paper_infer_s": paper[0], "paper_train_gb": paper[1], "paper_infer_gb": paper[2]} if paper else {})})
        print(rows[-1], flush=True)
    header = ["varied", "n", "d", "k", "inference s", "of which kNN s", "inference GB", "train step s", "train GB",
              "pretraining step s", "pretraining GB", "paper inference s (V100)", "paper train GB", "paper inference GB"]
    table = markdown_table(header, [
        [r["varied"], r["n"], r["d"], r["k"], r["infer_s"], r["knn_s"], r["infer_gb"], r["train_s"], r["train_gb"],
         r["pretrain_s"], r["pretrain_gb"], r.get("paper_infer_s", ""), r.get("paper_train_gb", ""),
         r.get("paper_infer_gb", "")] for r in rows])
    print(table, flush=True)

    detector = {}
    if run.left() > margin:
        clouds = [surface(detector_sizes["n_points"], seed=s).numpy() for s in range(detector_sizes["n_clouds"])]
        start = time.perf_counter()
        det = StudentTeacherDetector(n_epochs=detector_sizes["n_epochs"], device=device, random_state=0).fit(clouds)
        detector["fit_s"] = round(time.perf_counter() - start, 2)
        det.score_samples(clouds[:1])  # warm-up
        start = time.perf_counter()
        det.score_samples(clouds[:1])
        detector["score_samples_s"] = round(time.perf_counter() - start, 3)
        detector.update(n_points=detector_sizes["n_points"], n_clouds=detector_sizes["n_clouds"],
                        n_epochs=detector_sizes["n_epochs"])
        print("default detector:", detector, flush=True)
    return {"rows": rows, "table": table, "detector": detector}


def pretraining(device, sizes, out, resume_from, run, jobs):
    """Pretrain the paper's teacher for the rest of the budget, resumably."""
    import pretrain_teachers

    output = os.path.join(out, CHECKPOINT)
    resume = False
    if resume_from:
        for suffix in ("", ".json", ".last.pt", ".last.pt.json"):
            source = os.path.join(resume_from, CHECKPOINT + suffix)
            if os.path.exists(source):
                shutil.copy(source, output + suffix)
        resume = os.path.exists(output + ".last.pt")
    minutes = max(0.1 if run.record.get("dry_run") else 0.5, (run.left() - 20) / 60)
    argv = ["--d", "64", "--k", "32", "--n-blocks", "4", "--points", str(sizes["points"]),
            "--scenes", str(sizes["scenes"]), "--validation-scenes", str(sizes["validation_scenes"]),
            "--chunk-epochs", str(sizes["chunk_epochs"]), "--minutes", f"{minutes:.2f}", "--meshes", "",
            "--output", output, "--jobs", str(jobs), "--device", device] + (["--resume"] if resume else [])
    print("pretrain_teachers.py", " ".join(argv), flush=True)
    pretrain_teachers.main(argv)
    with open(output + ".last.pt.json") as fh:
        meta = json.load(fh)
    return {"resumed": resume, "epochs": meta.get("epochs"), "validation_chamfer": meta.get("validation_chamfer"),
            "untrained_validation_chamfer": meta.get("untrained_validation_chamfer"), "minutes": meta.get("minutes")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--budget", type=float, default=530.0, help="seconds for the whole run")
    parser.add_argument("--dry-run", action="store_true", help="small sizes, any device")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--resume-from", default=os.path.join(HERE, "checkpoints"),
                        help="folder holding an earlier run's checkpoint to continue")
    parser.add_argument("--skip", nargs="*", default=[], help="phases to leave out")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    sizes = DRY if args.dry_run else FULL
    run = Run(args.out, args.budget)
    run.record.update(device=device, dry_run=args.dry_run)
    jobs = max(1, (os.cpu_count() or 2) - 1)

    run.phase("environment", environment)
    probe = run.phase("keops", keops, device, 45 if args.dry_run else 120)
    use_keops = bool(probe and probe.get("keops_usable"))
    if "tests" not in args.skip:
        run.phase("tests", run_tests, 60 if args.dry_run else 150, min_left=60)
    if "exactness" not in args.skip:
        run.phase("exactness", exactness, device, sizes["exact_sizes"], sizes["chamfer_sizes"], use_keops, min_left=30)
    if "scaling" not in args.skip:
        run.phase("scaling", scaling, device, sizes["grid"], sizes["detector"], run, min_left=60)
    if "pretraining" not in args.skip:
        run.phase("pretraining", pretraining, device, sizes["pretraining"], args.out, args.resume_from, run, jobs,
                  min_left=40)
    run.save()
    failed = [name for name, p in run.record["phases"].items() if p["status"] == "failed"]
    print(f"\ndone in {run.record['elapsed_s']} s; failed phases: {failed or 'none'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
