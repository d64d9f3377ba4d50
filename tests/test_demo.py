"""The command line (python -m skst3d) and the plotting helpers it uses."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from skst3d.__main__ import main

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def test_demo_quick_prints_the_table_and_writes_results(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out_dir = tmp_path / "demo"
    assert main(["demo", "--quick", "--threads", "1", "--output", str(out_dir)]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("part type"))
    for column in ("AU-PRO@0.3", "AU-PRO@0.05", "cloud AUROC", "verdicts"):
        assert column in header
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["plate"], ["flange"], ["mean"])]
    assert [r[0] for r in rows if len(r) == 7] == ["plate", "flange", "mean"]
    assert str(out_dir) in out  # the output folder is printed

    results = json.loads((out_dir / "results.json").read_text())
    assert set(results["parts"]) == {"plate", "flange"}
    for row in results["parts"].values():
        for metric in ("au_pro_0.3", "au_pro_0.05", "cloud_auroc"):
            assert 0.0 <= row[metric] <= 1.0
    assert set(results["mean"]) == {"au_pro_0.3", "au_pro_0.05", "cloud_auroc", "verdict_accuracy"}
    assert "| mean |" in (out_dir / "results.md").read_text()
    pngs = sorted(p.name for p in out_dir.glob("*.png"))
    assert pngs == ["scores_flange.png", "scores_plate.png"]
    assert (out_dir / "scores_plate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_module_help_runs_as_a_script():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "skst3d", "--help"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "demo" in proc.stdout and "info" in proc.stdout


def test_demo_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--quick" in out and "--output" in out and "--device" in out


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    import skst3d

    assert f"skst3d {skst3d.__version__}" in out
    for section in ("devices:", "KeOps:", "cache folder", "bundled teachers:"):
        assert section in out


def test_info_reports_the_keops_cache_folder_override(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KEOPS_CACHE_FOLDER", str(tmp_path / "keops"))
    assert main(["info"]) == 0
    assert str(tmp_path / "keops") in capsys.readouterr().out


# ------------------------------------------------------------------------------ plotting
def _cloud(n=300, seed=0):
    rng = np.random.default_rng(seed)
    cloud = rng.uniform(size=(n, 3))
    labels = (cloud[:, 0] > 0.9).astype(np.int64)
    return cloud, cloud[:, 0] + 0.1 * rng.normal(size=n), labels


@pytest.mark.parametrize("view", ["top", "3d"])
def test_plot_anomaly_scores(view):
    pytest.importorskip("matplotlib")
    from skst3d.plotting import plot_anomaly_scores

    cloud, scores, labels = _cloud()
    axes = plot_anomaly_scores(cloud, scores, labels, view=view, title="t")
    assert len(axes) == 2 and axes[0].figure is axes[1].figure
    assert len(plot_anomaly_scores(cloud, scores, view=view)) == 1


def test_plot_anomaly_scores_into_given_axes_and_errors():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from skst3d.plotting import plot_anomaly_scores

    cloud, scores, labels = _cloud()
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_anomaly_scores(cloud, scores, ax=ax)[0] is ax
    with pytest.raises(ValueError, match="2 Axes"):
        plot_anomaly_scores(cloud, scores, labels, ax=ax)
    with pytest.raises(ValueError, match="entries"):
        plot_anomaly_scores(cloud, scores[:-1])
    with pytest.raises(ValueError, match="view"):
        plot_anomaly_scores(cloud, scores, view="front")


def test_plot_cloud_pairs_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from skst3d.plotting import plot_cloud_pairs

    pairs = [_cloud(seed=s) for s in range(3)]
    path = tmp_path / "pairs.png"
    fig = plot_cloud_pairs([p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs],
                           ["a", "b", "c"], path)
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert len(fig.axes) == 7  # 3 rows x 2 panels + one shared colour bar
    with pytest.raises(ValueError, match="titles"):
        plot_cloud_pairs([pairs[0][0]], [pairs[0][1]], [pairs[0][2]], ["a", "b"])


def test_plot_scan_marks_thresholds_regions_and_verdict(tmp_path):
    pytest.importorskip("matplotlib")
    from skst3d.defects import find_defects
    from skst3d.plotting import plot_scan

    cloud, scores, labels = _cloud(n=600)
    regions = find_defects(cloud, scores, threshold=0.8)
    path = tmp_path / "scan.png"
    fig = plot_scan(cloud, scores, threshold=0.8, cloud_threshold=0.95, regions=regions, verdict="defective",
                    score=scores.max(), labels=labels, title="scan.ply", path=path)
    assert path.read_bytes()[:4] == b"\x89PNG"
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:2] == ["top view", "side view (x-z)"]
    assert titles[2].startswith(f"predicted defects ({sum(r.n_points for r in regions)} points, {len(regions)} region")
    assert "ground truth" in titles[3]
    assert fig._suptitle.get_text().startswith("scan.ply: DEFECTIVE (score")
    colour_bar = fig.axes[-1]
    marks = sorted(line.get_ydata()[0] for line in colour_bar.lines)
    assert marks == pytest.approx([0.8, 0.95])  # both thresholds on the colour bar
    with pytest.raises(ValueError, match="outside the cloud"):
        bad = find_defects(cloud, scores, threshold=0.8)[0]
        plot_scan(cloud[:10], scores[:10], regions=[bad])


def test_plot_cloud_pairs_with_predictions_and_threshold():
    pytest.importorskip("matplotlib")
    from skst3d.plotting import plot_cloud_pairs

    pairs = [_cloud(seed=s) for s in range(2)]
    fig = plot_cloud_pairs([p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs], ["a", "b"],
                           threshold=0.9, predicted=[p[1] > 0.9 for p in pairs], view="side")
    assert len(fig.axes) == 7  # 2 rows x 3 panels + one shared colour bar
    assert [line.get_ydata()[0] for line in fig.axes[-1].lines] == [0.9]


def test_evaluation_loop_against_an_independent_computation():
    from sklearn.metrics import roc_auc_score

    from skst3d import StudentTeacherDetector
    from skst3d.datasets import make_synthetic_parts
    from skst3d.evaluation import evaluate_part_types, format_results
    from skst3d.metrics import au_pro

    data = make_synthetic_parts(n_train=3, n_test=6, part_types=["plate", "rod"], n_points=384, random_state=1)
    detector = StudentTeacherDetector("random", k=8, d=8, n_blocks=1, n_epochs=2, random_state=0)
    seen = {}
    results = evaluate_part_types(detector, data, on_part=lambda part, model, *rest: seen.update({part: model}))
    assert list(results) == ["plate", "rod"]
    for part, row in results.items():
        idx = [i for i, p in enumerate(data.test_part_types) if p == part]
        model = seen[part]
        anomaly = [-s for s in model.score_samples([data.test[i] for i in idx])]
        labels = [data.test_labels[i] for i in idx]
        defective = np.array([lab.any() for lab in labels])
        # the cloud anomaly: mean of the 3 % most anomalous points, round(0.03 * 384) = 12 of them
        top = np.array([np.sort(a)[::-1][:12].mean() for a in anomaly])
        assert row["cloud_auroc"] == pytest.approx(roc_auc_score(defective, top))
        assert row["verdict_accuracy"] == pytest.approx(np.mean((top > -model.cloud_offset_) == defective))
        assert row["au_pro_0.05"] == pytest.approx(au_pro(labels, anomaly, integration_limit=0.05))
        assert row["n_test"] == len(idx) and row["n_defective"] == int(defective.sum())
    table = format_results(results, style="markdown").splitlines()
    assert table[0].startswith("| part type | AU-PRO@0.3") and table[-1].startswith("| mean |")
