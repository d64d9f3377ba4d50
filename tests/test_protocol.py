"""The dev/test protocol of the benchmarks (benchmarks/protocol.py) and its quality script."""

import os
import sys

import numpy as np
import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks")
sys.path.insert(0, os.path.abspath(BENCHMARKS))

import protocol  # noqa: E402

from skst3d.datasets import PART_TYPES, PROCEDURAL_SHAPES, list_meshes  # noqa: E402


def _group_of(name):
    kind, _, shape = name.partition(":")
    if kind == "procedural":
        assert shape in PROCEDURAL_SHAPES
        return "pretraining"
    if kind == "synthetic":
        return protocol.SYNTHETIC_GROUPS[shape]
    return protocol.MESH_GROUPS[name]


def test_every_mesh_is_in_exactly_one_group():
    root = protocol.mesh_root()
    if not os.path.isdir(root):
        pytest.skip(f"shared meshes ({root}) not present")
    on_disk = sorted(os.path.relpath(p, root).replace(os.sep, "/") for p in list_meshes(root))
    assert sorted(protocol.MESH_GROUPS) == on_disk  # a dict: each file once; every file listed
    assert set(protocol.MESH_GROUPS.values()) == set(protocol.GROUPS)
    assert len(protocol.pretraining_meshes()) == sum(g == "pretraining" for g in protocol.MESH_GROUPS.values())


def test_split_is_disjoint_and_duplicates_share_a_group():
    assert set(protocol.SYNTHETIC_GROUPS) == set(PART_TYPES)
    for split, parts in protocol.SPLITS.items():
        for part in parts:
            group = protocol.SYNTHETIC_GROUPS[part.mesh] if part.source == "synthetic" else protocol.MESH_GROUPS[part.mesh]
            assert group == split, part
    dev = {p.mesh for p in protocol.DEV_PARTS}
    test = {p.mesh for p in protocol.TEST_PARTS}
    assert not dev & test
    assert len({p.name for p in protocol.DEV_PARTS + protocol.TEST_PARTS}) == len(protocol.DEV_PARTS + protocol.TEST_PARTS)
    for names in protocol.DUPLICATES:
        assert len({_group_of(n) for n in names}) == 1, names
    # the suggested sizes: mostly real parts, both styles and noise levels, a few dense cases
    for parts in protocol.SPLITS.values():
        assert sum(p.source == "real" for p in parts) >= 6
        assert {s for p in parts for s in p.styles} == set(protocol.STYLES)
        assert {p.noise for p in parts} == set(protocol.NOISE_LEVELS)
        assert 1 <= sum(p.dense is not None for p in parts) <= 3


def test_case_list():
    dev = protocol.cases("dev")
    assert {c.seed for c in dev} == set(protocol.DEFAULT_SEEDS)
    assert all(c.split == "dev" and c.n_train == 12 and c.n_test == 12 for c in dev)
    assert {c.n_points for c in dev} == {4096, 16384}
    assert len({c.key for c in dev}) == len(dev) and len({c.data_seed for c in dev}) == len(dev)
    quick = protocol.cases("test", quick=True)
    assert {c.part.source for c in quick} == {"synthetic", "real"} and {c.n_points for c in quick} == {1024}
    assert [c.part.name for c in protocol.cases("dev", seeds=(3,), parts=["rod"])] == ["rod"] * 3
    assert protocol.cases("test", parts=["rod"]) == []
    with pytest.raises(ValueError, match="unknown parts"):
        protocol.cases("dev", parts=["nope"])


@pytest.mark.parametrize("style", protocol.STYLES)
def test_same_seed_same_scans_and_labels_line_up(style):
    case = protocol.Case("dev", protocol.DEV_PARTS[0], style, 512, "high", 0, n_train=2, n_test=4)
    a, b = protocol.make_case(case), protocol.make_case(case)
    assert protocol.data_fingerprint(a) == protocol.data_fingerprint(b)
    for x, y in zip(a.train + a.test, b.train + b.test):
        np.testing.assert_array_equal(x, y)
    other = protocol.make_case(protocol.Case("dev", protocol.DEV_PARTS[0], style, 512, "high", 1, n_train=2, n_test=4))
    assert not np.array_equal(other.train[0], a.train[0])
    assert len(a.train) == 2 and len(a.test) == 4
    assert all(c.shape == (512, 3) and c.dtype == np.float32 for c in a.train + a.test)
    assert sum(bool(lab.any()) for lab in a.test_labels) == 2
    for cloud, labels, kinds in zip(a.test, a.test_labels, a.test_defect_kinds):
        assert labels.shape == (len(cloud),) and labels.dtype == np.int64
        assert sorted(set(labels.tolist()) - {0}) == list(range(1, len(kinds) + 1))
        assert len(kinds) <= 2


def test_around_scans_are_turned_tilted_and_scaled():
    mesh = protocol.part_mesh(protocol.DEV_PARTS[0])  # the rod: longest side 100 along x
    extents = []
    for seed in range(6):
        rng = np.random.default_rng(seed)
        cloud, labels, _ = protocol.around_scan(mesh, 2000, 0.0, 0, rng)
        assert not labels.any()
        extents.append(np.ptp(cloud[:, 2]))
        xy = cloud[:, :2] - cloud[:, :2].mean(0)
        axis = np.linalg.svd(xy, full_matrices=False)[2][0]
        assert 95 < np.ptp(xy @ axis) < 105  # 100 long, +-3 % tolerance, turned about z, tilted
    # a 20-wide rod lying along x: tilting by up to 5 degrees raises z by at most 100 * sin(5 deg)
    assert max(extents) < 20 * 1.03 + 100 * np.sin(np.deg2rad(5)) + 1


def test_link_pretraining_meshes(tmp_path):
    if not protocol.meshes_available():
        pytest.skip("shared meshes not present")
    folder = protocol.link_pretraining_meshes(str(tmp_path / "pre"))
    linked = list_meshes(folder)
    assert len(linked) == len(protocol.pretraining_meshes())
    assert not any("fandisk" in p or "rotor_small" in p for p in linked)


def test_quick_run_writes_the_quality_table(tmp_path, monkeypatch, capsys):
    import _results
    import bench_quality

    results_md = tmp_path / "RESULTS.md"
    monkeypatch.setattr(_results, "RESULTS", str(results_md))
    monkeypatch.setattr(bench_quality, "set_threads", lambda threads: None)  # keep the test session's
    argv = ["--quick", "--methods", "fpfh", "--parts", "rod", "--cache", str(tmp_path / "cache"),
            "--variant", 'fpfh-k16={"method": "fpfh", "k_features": 16}']
    results = bench_quality.main(argv)
    assert [len(results[m, "dev"]) for m in ("fpfh", "fpfh-k16")] == [2, 2]
    text = results_md.read_text()
    assert "<!-- begin quality_quick -->" in text and "Smoke run" in text
    rows = [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| fpfh")]
    assert rows == ["| fpfh", "| fpfh-k16"]
    assert "| rod/range/1024/low |" in text and "| rod/around/1024/low |" in text
    assert "every choice" in text.lower()
    # a second run reads every result from the cache
    capsys.readouterr()
    again = bench_quality.main(argv + ["--no-write"])
    assert "(cached)" in capsys.readouterr().out
    assert again["fpfh", "dev"][0]["au_pro_30"] == results["fpfh", "dev"][0]["au_pro_30"]


def test_variant_parsing():
    import argparse

    import bench_quality

    name, spec = bench_quality.parse_variant('k16={"k": 16, "n_students": 3, "registration": true}')
    assert name == "k16" and spec["family"] == "st" and spec["registration"] is True
    assert spec["params"] == {"k": 16, "n_students": 3}
    _, spec = bench_quality.parse_variant('b={"method": "random-teacher", "k": 8, "registration": true}')
    assert spec["params"] == {"teacher": "random", "k": 8} and spec["registration"]
    detector = bench_quality.build(spec, seed=3)
    assert detector.steps[0][1].random_state == 3 and detector.steps[-1][1].k == 8
    assert detector.steps[-1][1].teacher == "random"
    _, spec = bench_quality.parse_variant('c={"registration": false}')  # the detector's own off too
    assert bench_quality.build(spec, seed=0).registration is False
    for bad in ["noequals", 'x={"method": "nope"}', "x=[1]", "x={bad json"]:
        with pytest.raises(argparse.ArgumentTypeError):
            bench_quality.parse_variant(bad)


def test_verdict_grid_by_hand():
    # two good scans and two defective ones of 100 points; held-out 1st percentile -3, median -1
    import bench_verdicts

    rng = np.random.default_rng(0)
    anomaly = [rng.uniform(0, 1, 100) for _ in range(4)]
    anomaly[2][:3] = 10.0  # three points: the top 3 % of a defective scan
    anomaly[3][0] = 10.0  # one point: only the highest-point score sees it as the highest
    defective = np.array([False, False, True, True])
    auroc, accuracy = bench_verdicts.case_grid(anomaly, defective, np.array([-3.0, -1.0]))
    tail0, tail3 = bench_verdicts.TAILS.index(0.0), bench_verdicts.TAILS.index(0.03)
    assert auroc[tail0] == 1.0 and auroc[tail3] == 1.0
    # threshold on the anomaly scale: 1 + margin * 2; tail 0.03: scans at about 1, 1, 10 and 4
    top3 = [np.sort(a)[-3:].mean() for a in anomaly]
    for j, margin in enumerate(bench_verdicts.MARGINS):
        expected = np.mean((np.array(top3) > 1 + 2 * margin) == defective)
        assert accuracy[tail3, j] == pytest.approx(expected)
