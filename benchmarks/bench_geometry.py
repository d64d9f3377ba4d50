"""Timings of skst3d.geometry: kNN backends, Chamfer distance, FPS, receptive fields.

Run from the repository root::

    python benchmarks/bench_geometry.py          # full (a few minutes on 2 CPU cores)
    python benchmarks/bench_geometry.py --quick  # smaller sizes, for a smoke test

Prints a table and writes the "geometry" section of benchmarks/RESULTS.md. Times are
wall-clock medians of 3 runs after a warm-up run (one run for anything slower than 2 s);
KeOps compilation is excluded (a warm-up query compiles each formula first).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _results import markdown_table, write_section  # noqa: E402

from skst3d.geometry import (  # noqa: E402
    chamfer_distance,
    farthest_point_sampling,
    keops_available,
    knn_graph,
    receptive_fields,
)

K = 32
TORCH_CPU_LIMIT_S = 20.0


def surface(n, seed=0, device="cpu"):
    """Points on a wavy surface: a stand-in for a scanned object."""
    g = np.random.default_rng(seed)
    uv = g.random((n, 2))
    z = 0.1 * np.sin(6 * uv[:, 0]) * np.cos(4 * uv[:, 1])
    return torch.from_numpy(np.column_stack([uv, z]).astype(np.float32)).to(device)


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def measure(fn, device="cpu", slow=2.0):
    """Median wall-clock seconds of fn() over 3 runs, or a single run if it is slow."""
    times = []
    for _ in range(3):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
        if times[-1] > slow:
            break
    return statistics.median(times)


def fmt(seconds):
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def bench_knn(rows, devices, quick):
    sizes = [4096, 16384] if quick else [4096, 16384, 65536]
    for device in devices:
        backends = ["kdtree", "torch"] + (["keops"] if keops_available(device) else [])
        if "keops" in backends:  # compile outside the timings
            knn_graph(surface(100, device=device), K, backend="keops")
        device_sizes = sizes + ([262144] if device == "cuda" and not quick else [])
        for backend in backends:
            previous = None
            for n in device_sizes:
                label = f"kNN graph, k={K}, n={n:,}, {backend}"
                if backend == "kdtree" and device == "cuda":
                    label += " (via CPU)"
                if backend == "torch" and device == "cpu" and previous is not None:
                    estimate = previous[1] * (n / previous[0]) ** 2
                    if estimate > TORCH_CPU_LIMIT_S:
                        rows.append([label, device, f"skipped (about {estimate:.0f} s, quadratic)"])
                        continue
                points = surface(n, seed=1, device=device)
                t = measure(lambda: knn_graph(points, K, backend=backend), device)
                previous = (n, t)
                rows.append([label, device, fmt(t)])
                print(rows[-1], flush=True)


def bench_chamfer(rows, devices, quick):
    n_fields, m, field = (4, 1024, 2000) if quick else (16, 1024, 2000)
    g = np.random.default_rng(2)
    sizes = g.integers(int(field * 0.8), int(field * 1.2), n_fields)
    for device in devices:
        backends = ["torch"] + (["keops"] if keops_available(device) else [])
        targets = [surface(int(s), seed=i, device=device) - 0.5 for i, s in enumerate(sizes)]
        pred = (surface(n_fields * m, seed=99, device=device) - 0.5).view(n_fields, m, 3)
        for backend in backends:
            pred_leaf = pred.clone().requires_grad_()

            def step():
                chamfer_distance(pred_leaf, targets, backend=backend).mean().backward()

            step()  # warm-up (and KeOps compilation)
            t = measure(step, device)
            label = f"Chamfer fwd+bwd, {n_fields} fields of ~{field:,} vs {m:,} predictions, {backend}"
            rows.append([label, device, fmt(t)])
            print(rows[-1], flush=True)


def plain_numpy_fps(coords, n_samples, first):
    """Baseline: the textbook loop, every pick updating every point (numpy, in place)."""
    x, y, z = (np.ascontiguousarray(coords[:, a]) for a in range(3))
    mind = np.full(len(coords), np.inf, dtype=coords.dtype)
    d, tmp = np.empty_like(mind), np.empty_like(mind)
    out, i = np.empty(n_samples, dtype=np.int64), first
    for s in range(n_samples):
        out[s] = i
        np.subtract(x, x[i], out=d)
        np.multiply(d, d, out=d)
        for c in (y, z):
            np.subtract(c, c[i], out=tmp)
            np.multiply(tmp, tmp, out=tmp)
            d += tmp
        np.minimum(mind, d, out=mind)
        mind[i] = -1
        i = int(mind.argmax())
    return out


def plain_torch_fps(points, n_samples, first):
    """Farthest point sampling, the plain loop in torch: every pick updates every point."""
    min_dist = torch.full((points.shape[0],), float("inf"), dtype=points.dtype)
    chosen = [first]
    for _ in range(n_samples - 1):
        min_dist = torch.minimum(min_dist, (points - points[chosen[-1]]).pow(2).sum(1))
        chosen.append(int(min_dist.argmax()))
    return torch.tensor(chosen)


def bench_fps(rows, devices, quick):
    n, m = (50_000, 16_000) if quick else (200_000, 64_000)
    for device in devices:
        points = surface(n, seed=3, device=device)
        t = measure(lambda: farthest_point_sampling(points, m, random_state=0), device)
        impl = "blocked numpy" if device == "cpu" else "torch loop"
        rows.append([f"FPS {n:,} -> {m:,} ({impl})", device, fmt(t)])
        print(rows[-1], flush=True)
        if device == "cpu":
            # The plain loops cost the same per pick: time a slice of them and scale up.
            part = m // 16
            baselines = {
                "plain numpy loop": lambda: plain_numpy_fps(points.numpy(), part, 0),
                "plain torch loop": lambda: plain_torch_fps(points, part, 0),
            }
            for name, fn in baselines.items():
                t_plain = measure(fn, device) * m / part
                label = f"FPS {n:,} -> {m:,} ({name}, extrapolated from {part:,} picks)"
                rows.append([label, device, fmt(t_plain)])
                print(rows[-1], flush=True)


def bench_receptive_fields(rows, devices, quick):
    n, n_hops, n_centers = (16_384, 8, 16) if quick else (65_536, 8, 16)
    for device in devices:
        points = surface(n, seed=4, device=device)
        knn, _ = knn_graph(points, K, backend="kdtree")
        centers = np.random.default_rng(0).choice(n, n_centers, replace=False)
        centers = torch.from_numpy(centers).to(device)
        t = measure(lambda: receptive_fields(knn, centers, n_hops), device)
        _, offsets = receptive_fields(knn, centers, n_hops)
        mean_size = float(offsets.diff().float().mean())
        label = (
            f"receptive fields, {n_centers} centres, k={K}, {n_hops} hops, n={n:,} "
            f"(mean size {mean_size:,.0f})"
        )
        rows.append([label, device, fmt(t)])
        print(rows[-1], flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke test)")
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    load_before = os.getloadavg()[0]
    rows = []
    bench_knn(rows, devices, args.quick)
    bench_chamfer(rows, devices, args.quick)
    bench_fps(rows, devices, args.quick)
    bench_receptive_fields(rows, devices, args.quick)
    table = markdown_table(["operation", "device", "time"], rows)
    print(table)
    notes = (
        "Points lie on a wavy surface (float32). Median of 3 runs after a warm-up, or one run "
        "when a run takes over 2 s; KeOps compilation excluded. The torch kNN backend (exact "
        f"dense cdist) is skipped on the CPU when its quadratic extrapolation exceeds {TORCH_CPU_LIMIT_S:.0f} s. "
        "All kNN backends return the same exact neighbours. "
        f"Load average (1 min) {load_before:.1f} at the start and {os.getloadavg()[0]:.1f} at the end "
        f"on {os.cpu_count()} cores: on a shared machine, multi-threaded torch timings suffer most."
    )
    write_section("geometry", "Geometry (benchmarks/bench_geometry.py)", table + "\n\n" + notes)


if __name__ == "__main__":
    main()
