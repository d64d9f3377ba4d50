"""Time and memory against n, d and k, beside the paper's Table 3 (V100), CPU and GPU.

* Inference = points on the device -> per-point anomaly scores: one kNN graph shared by teacher
  and student, then both networks (their geometric LFA terms in one fused pass).
* Against a straightforward gather-concat-mean implementation of the same two networks
  (skst3d.nn.gather_descriptors), measured in the same run.
* Training step = student forward + backward + Adam step on one cloud.
* Pretraining step = 16 receptive fields (at most 2,048 target points each) through network,
  decoder and Chamfer loss, backward and Adam step (the network runs on their union only).
* Peak memory: torch.cuda.max_memory_allocated on GPU; on CPU the growth of the peak RSS of a
  fresh process for each measurement.

* Scans: a default :class:`~skst3d.StudentTeacherDetector` (fitted on 12 scans of 4,096 points)
  scores one scan of 64k to 1M points, each in a fresh process: seconds and peak memory beside
  scipy's exact 32-NN k-d tree query of the same scan (all cores), for the default n_jobs
  (one thread) and ``n_jobs=-1``; the 3D-ST path alone (no registration, no fusion) too.
* Fit: the default detector on 12 scans of 16,384 points, default epochs; and the busy-machine
  slowdown: the same fit (4,096 points) beside one CPU-bound process against on an idle machine.

    python benchmarks/bench_scaling.py            # CPU: n = 4k, 16k, 64k; GPU: the paper's grid
    python benchmarks/bench_scaling.py --quick
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _results import markdown_table, write_section  # noqa: E402

from skst3d.geometry import knn_graph  # noqa: E402
from skst3d.nn import DescriptorNet, NeighborGraph, fused_geometric_terms, gather_descriptors  # noqa: E402

# Paper, Table 3 (V100, n = 64,000 unless varied): inference s, training GB, inference GB.
PAPER = {
    ("n", 16000): (0.014, 2.29, 1.71), ("n", 32000): (0.026, 3.33, 2.15), ("n", 64000): (0.049, 5.89, 2.71),
    ("n", 128000): (0.080, 7.87, 3.47),
    ("d", 16): (0.017, 2.06, 1.75), ("d", 32): (0.028, 3.54, 2.24), ("d", 64): (0.049, 5.89, 2.71),
    ("d", 128): (0.093, 10.98, 5.14), ("d", 256): (0.189, 21.13, 8.81),
    ("k", 8): (0.020, 2.43, 1.79), ("k", 16): (0.030, 3.98, 2.28), ("k", 32): (0.049, 5.89, 2.71),
    ("k", 64): (0.080, 10.86, 4.76),
}


def surface(n, seed=0):
    rng = np.random.default_rng(seed)
    uv = rng.uniform(-1, 1, size=(n, 2)) * np.sqrt(n) / 2
    z = np.sin(uv[:, 0] / 5) * np.cos(uv[:, 1] / 7) * 3
    return torch.tensor(np.c_[uv, z], dtype=torch.float32)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats=3):
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def timed_with_peak(fn, device, repeats=3):
    """(median seconds of ``fn``, peak memory in GB it added: CUDA allocator, or process RSS)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if device.type == "cuda" else peak_rss_gb()
    seconds = timed(fn, device, repeats)
    if device.type == "cuda":
        return seconds, (torch.cuda.max_memory_allocated() - base) / 2**30
    return seconds, max(0.0, peak_rss_gb() - base)


def peak_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure(n, d, k, device, naive=False, phases=("infer", "train", "pretrain"), n_blocks=4):
    points = surface(n).to(device)
    teacher, student = DescriptorNet(d, n_blocks).to(device).eval(), DescriptorNet(d, n_blocks).to(device)
    mean, std = torch.zeros(d, device=device), torch.ones(d, device=device)

    def infer():
        with torch.no_grad():
            idx, _ = knn_graph(points, k)
            graph = NeighborGraph.from_knn(points, idx)
            geo_t, geo_s = fused_geometric_terms([teacher, student], graph)
            target = (teacher(graph, geo_t) - mean) / std
            return (student(graph, geo_s) - target).norm(dim=1)

    def infer_naive():
        with torch.no_grad():
            idx, _ = knn_graph(points, k)
            target = (gather_descriptors(teacher, points, idx) - mean) / std
            return (gather_descriptors(student, points, idx) - target).norm(dim=1)

    row = {}
    gc.collect()
    if "infer" in phases:
        row["infer_s"], row["infer_gb"] = timed_with_peak(infer, device)
    if naive:
        row["naive_s"] = timed(infer_naive, device, repeats=2)
    if "pretrain" in phases:
        row["pretrain_s"], row["pretrain_gb"] = measure_pretraining_step(points, d, k, device)
    if "train" in phases:
        idx, _ = knn_graph(points, k)
        graph = NeighborGraph.from_knn(points, idx)
        with torch.no_grad():
            target = teacher(graph)
        optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)

        def step():
            loss = (student(graph) - target).pow(2).sum(1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        row["train_s"], row["train_gb"] = timed_with_peak(step, device)
    return row


def measure_pretraining_step(points, d, k, device):
    """One teacher pretraining step (16 receptive fields, decoder, Chamfer loss, Adam): seconds, GB."""
    from skst3d.nn import ReceptiveFieldDecoder
    from skst3d.pretrain import reconstruction_loss

    network, decoder = DescriptorNet(d, 4).to(device), ReceptiveFieldDecoder(d).to(device)
    optimizer = torch.optim.Adam([*network.parameters(), *decoder.parameters()], lr=1e-3)
    idx, _ = knn_graph(points, k)
    rng = np.random.RandomState(0)

    def step():
        centers = torch.from_numpy(rng.choice(points.shape[0], 16, replace=False))
        loss = reconstruction_loss(network, decoder, points, idx, centers, 2048, rng).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return timed_with_peak(step, device)


def measure_in_child(n, d, k, device):
    """``measure`` in fresh processes (inference, then training), so each peak RSS is its own."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    row = {}
    for phase in ("infer", "train", "pretrain"):
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            row.update(pool.submit(measure, n, d, k, device, phases=(phase,)).result())
    return row


TRAIN_SCANS, TRAIN_POINTS = 12, 4096


def _fitted_detector(params, n_points=TRAIN_POINTS, n_scans=TRAIN_SCANS):
    from skst3d import StudentTeacherDetector

    train = [surface(n_points, seed=s).numpy().astype(np.float64) for s in range(n_scans)]
    return StudentTeacherDetector(random_state=0, **params).fit(train)


def _fit_and_save(params, path):
    import joblib

    joblib.dump(_fitted_detector(params), path)


def _score_scan(n, model_path, n_jobs):
    """In a fresh process: (score seconds, peak RSS growth GB, k-d tree 32-NN seconds) of an n-point scan."""
    import joblib
    from scipy.spatial import cKDTree

    det = joblib.load(model_path)
    scan = surface(n, seed=99).numpy().astype(np.float64)
    start = time.perf_counter()
    cKDTree(scan).query(scan, 33, workers=-1)
    kdtree_s = time.perf_counter() - start
    gc.collect()
    base = peak_rss_gb()
    det.set_params(n_jobs=n_jobs)
    start = time.perf_counter()
    det.score_samples([scan])
    return time.perf_counter() - start, peak_rss_gb() - base, kdtree_s


def _fit_seconds(params, n_points, busy=False):
    """Seconds of a default fit (12 scans), optionally beside a CPU-bound process."""
    import multiprocessing

    spinner = None
    if busy:
        spinner = multiprocessing.get_context("spawn").Process(target=_spin, daemon=True)
        spinner.start()
    try:
        start = time.perf_counter()
        _fitted_detector(params, n_points=n_points)
        return time.perf_counter() - start
    finally:
        if spinner is not None:
            spinner.terminate()


def _spin():
    while True:
        pass


def _in_child(fn, *args):
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def scans_and_fits(quick):
    """Rows for scan sizes (default and 3D-ST-only set-ups, 1 thread and all cores) and fit times."""
    from _results import markdown_table

    sizes = (16384, 65536) if quick else (16384, 65536, 100_000, 250_000, 1_000_000)
    setups = {"default": {}, "3D-ST path only": {"registration": False, "fusion": None}}
    if quick:
        setups = {name: dict(p, n_epochs=2) for name, p in setups.items()}
    rows = []
    folder = tempfile.mkdtemp(prefix="skst3d-scaling-")
    for name, params in setups.items():
        model_path = os.path.join(folder, f"{len(rows)}.joblib")
        _in_child(_fit_and_save, params, model_path)  # one fit per set-up, loaded by each measurement
        for n in sizes:
            for n_jobs in (None, -1):
                seconds, gb, kdtree_s = _in_child(_score_scan, n, model_path, n_jobs)
                rows.append([name, n, "1 (default)" if n_jobs is None else "all", seconds, gb, kdtree_s,
                             seconds / kdtree_s])
                print(rows[-1], flush=True)
    scan_table = markdown_table(
        ["set-up", "scan points", "threads", "score_samples s", "peak memory GB", "32-NN k-d tree s (all cores)",
         "ratio"], rows)
    fit_points = 2048 if quick else 16384
    fit_params = {"n_epochs": 2} if quick else {}
    fit_s = _in_child(_fit_seconds, fit_params, fit_points)
    idle_s = _in_child(_fit_seconds, fit_params, TRAIN_POINTS)
    busy_s = _in_child(_fit_seconds, fit_params, TRAIN_POINTS, True)
    lines = [
        f"Default fit on {TRAIN_SCANS} scans of {fit_points:,} points: {fit_s:.1f} s.",
        f"Default fit on {TRAIN_SCANS} scans of {TRAIN_POINTS:,} points: {idle_s:.1f} s on an idle machine, "
        f"{busy_s:.1f} s beside one CPU-bound process ({busy_s / idle_s:.2f}x).",
    ]
    default_16k = next((r[3] for r in rows if r[0] == "default" and r[1] == 16384 and r[2] == "all"), None)
    return scan_table, lines, default_16k


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-scans", action="store_true", help="only the network grid")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if (args.device == "auto" and torch.cuda.is_available()) else
                          ("cpu" if args.device == "auto" else args.device))
    body = []

    # CPU target: n = 16,384, d = 64, k = 32 against the naive implementation, same run: the
    # paper's 4 residual blocks, and the default detector's own network (the bundled teacher's).
    from skst3d.weights import n_blocks as bundled_n_blocks

    n_ref = 4096 if args.quick else 16384
    naive_default = None
    for blocks in sorted({4, bundled_n_blocks(64, 32)}):
        cpu = measure(n_ref, 64, 32, torch.device("cpu"), naive=True, phases=("infer",), n_blocks=blocks)
        if blocks == bundled_n_blocks(64, 32):
            naive_default = cpu["naive_s"]
        line = (f"CPU inference, n = {n_ref}, d = 64, k = 32, {blocks} residual block(s)"
                f"{' (the default detector network)' if blocks == bundled_n_blocks(64, 32) else ''}, teacher + "
                f"student, kNN included: skst3d {cpu['infer_s']:.3f} s, gather-concat-mean {cpu['naive_s']:.3f} s, "
                f"speed-up {cpu['naive_s'] / cpu['infer_s']:.1f}x ({torch.get_num_threads()} threads).")
        print(line, flush=True)
        body.append(line)

    grid = [("n", n, 64, 32) for n in ((1024, 4096) if args.quick else (4096, 16384, 65536))]
    if device.type == "cuda" and not args.quick:
        grid = ([("n", n, 64, 32) for n in (4096, 16000, 32000, 64000, 128000, 256000)]
                + [("d", 64000, d, 32) for d in (16, 32, 128, 256)]
                + [("k", 64000, 64, k) for k in (8, 16, 64)])
    elif not args.quick:
        grid += [("d", 16384, d, 32) for d in (32, 128)] + [("k", 16384, 64, k) for k in (16, 64)]
    rows = []
    for axis, n, d, k in grid:
        r = measure_in_child(n, d, k, device) if device.type == "cpu" else measure(n, d, k, device)
        value = {"n": n, "d": d, "k": k}[axis]
        paper = PAPER.get((axis, value)) if n in (16000, 32000, 64000, 128000) else None
        rows.append([axis, n, d, k, r["infer_s"], r["infer_gb"], r["train_s"], r["train_gb"],
                     r["pretrain_s"], r["pretrain_gb"], *(paper if paper else ("", "", ""))])
        print(rows[-1], flush=True)
    header = ["varied", "n", "d", "k", "inference s", "inference GB", "train step s", "train GB",
              "pretraining step s", "pretraining GB", "paper inference s (V100)", "paper train GB", "paper inference GB"]
    table = markdown_table(header, rows)
    print(table)
    ns = [r for r in rows if r[0] == "n"]
    if len(ns) >= 2:
        growth = np.log(ns[-1][4] / ns[0][4]) / np.log(ns[-1][1] / ns[0][1])
        line = f"Inference time grows as n^{growth:.2f} from n = {ns[0][1]} to {ns[-1][1]} on {device.type}"
        if ns[0][5] > 0:  # CPU peaks below the RSS resolution read 0
            line += f"; inference memory as n^{np.log(ns[-1][5] / ns[0][5]) / np.log(ns[-1][1] / ns[0][1]):.2f}"
        body.append(line + ".")
    body.append(f"Device for the grid: {device}. Memory on CPU: growth of the peak RSS of a fresh process "
                "per row during the measurement (inputs and weights excluded).")
    body.append(table)
    if not args.skip_scans and device.type == "cpu":
        scan_table, lines, default_16k = scans_and_fits(args.quick)
        if default_16k is not None and n_ref == 16384:  # the same size on both sides
            lines.append(
                f"The whole default scoring (registration, 3D-ST, location normalisation, FPFH companion) of "
                f"{n_ref:,} points, all cores: {default_16k:.3f} s, against {naive_default:.3f} s for the "
                f"gather-concat-mean network above: {naive_default / default_16k:.1f}x (issue 20 asks for 5x).")
        body += ["Scans of growing size, scored in a fresh process each (peak memory: growth of the "
                 "process's peak RSS while scoring):", scan_table, *lines]
    write_section("scaling_quick" if args.quick else "scaling",
                  "Time and memory: scans, fits, and the network against n, d and k", "\n\n".join(body))


if __name__ == "__main__":
    main()
