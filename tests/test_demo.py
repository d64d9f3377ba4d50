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
    for column in ("AU-PRO@0.3", "AU-PRO@0.05", "cloud AUROC"):
        assert column in header
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["plate"], ["flange"], ["mean"])]
    assert [r[0] for r in rows if len(r) == 6] == ["plate", "flange", "mean"]
    assert str(out_dir) in out  # the output folder is printed

    results = json.loads((out_dir / "results.json").read_text())
    assert set(results["parts"]) == {"plate", "flange"}
    for row in results["parts"].values():
        for metric in ("au_pro_0.3", "au_pro_0.05", "cloud_auroc"):
            assert 0.0 <= row[metric] <= 1.0
    assert set(results["mean"]) == {"au_pro_0.3", "au_pro_0.05", "cloud_auroc"}
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
        plot_anomaly_scores(cloud, scores, view="side")


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
