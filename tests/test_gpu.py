"""Checks that need a CUDA device (skipped without one; benchmarks/gpu_check.sh runs them)."""

import numpy as np
import pytest
import torch

from skst3d import StudentTeacherDetector, TeacherPretrainer
from skst3d.geometry import chamfer_distance, knn_graph

pytestmark = pytest.mark.cuda


def wavy(n, seed):
    rng = np.random.default_rng(seed)
    uv = rng.uniform(-1, 1, size=(n, 2)) * np.sqrt(n) / 2
    return np.c_[uv, np.sin(uv[:, 0] / 5) * np.cos(uv[:, 1] / 7) * 3]


def test_keops_grid_knn_on_cuda_is_exact():
    # 100,000 points go through the block-sparse grid search; the k-d tree is the reference.
    points = torch.tensor(wavy(100_000, 0), dtype=torch.float32)
    ref_idx, ref_dist = knn_graph(points.double(), 32, backend="kdtree")
    idx, dist = knn_graph(points.cuda(), 32, backend="keops")
    torch.testing.assert_close(dist.cpu().double(), ref_dist, rtol=1e-5, atol=1e-5)
    same = (idx.cpu().sort(1).values == ref_idx.sort(1).values).all(1)
    assert same.float().mean() > 0.999  # the rest differ only at ties within float32 rounding


def test_keops_chamfer_gradients_on_cuda_match_the_cpu():
    rng = np.random.default_rng(1)
    pred = torch.tensor(rng.normal(size=(6, 128, 3)), requires_grad=True)
    targets = [torch.tensor(rng.normal(size=(int(rng.integers(50, 400)), 3))) for _ in range(6)]
    cpu = chamfer_distance(pred, targets, backend="torch")
    cpu.sum().backward()
    pred_cuda = pred.detach().cuda().requires_grad_()
    gpu = chamfer_distance(pred_cuda, [t.cuda() for t in targets], backend="keops")
    gpu.sum().backward()
    torch.testing.assert_close(gpu.detach().cpu(), cpu.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(pred_cuda.grad.cpu(), pred.grad, rtol=1e-10, atol=1e-12)


def test_detector_fitted_on_cpu_scores_the_same_on_cuda():
    clouds = [wavy(3000, s) for s in range(4)]
    det = StudentTeacherDetector("random", k=16, d=16, n_blocks=1, n_epochs=3, device="cpu", random_state=0)
    det.fit(clouds[:3])
    cpu = det.score_samples(clouds[3:])[0]
    gpu = det.set_params(device="cuda").score_samples(clouds[3:])[0]
    np.testing.assert_allclose(gpu, cpu, rtol=1e-3, atol=1e-3)


def test_pretraining_runs_on_cuda_and_transforms_like_the_cpu():
    clouds = [wavy(2000, s) for s in range(3)]
    teacher = TeacherPretrainer(d=16, k=16, n_blocks=2, n_epochs=2, n_decoded_points=64, device="cuda",
                                random_state=0).fit(clouds)
    assert all(np.isfinite(teacher.loss_curve_))
    gpu = teacher.transform(clouds[:1])[0]
    cpu = teacher.set_params(device="cpu").transform(clouds[:1])[0]
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-4)
