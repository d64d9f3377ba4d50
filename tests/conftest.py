import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

# CI replays the same examples every run (derandomize) so a green run stays green;
# torch-heavy properties get no deadline.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=25,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=50)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "ci"))

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SHARED_MESHES = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "meshes")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def mesh_dir():
    path = os.path.abspath(SHARED_MESHES)
    if not os.path.isdir(path):
        pytest.skip("shared meshes (../shared/data/meshes) not present")
    return path


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device")
    if not torch.cuda.is_available():
        for item in items:
            if "cuda" in item.keywords:
                item.add_marker(skip_cuda)
