"""`dualtune compare`: studies of one space side by side (a table and a picture), and the read
path of `trials`/`compare` (no TensorFlow, bulk reads).

The fast tests record studies through the real recorder into a real SQLite store; the end-to-end
test runs a local study and a vertex study (against the emulator) of one space file through the
real CLI and compares them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from dualtune import mlflow_layout as layout
from dualtune.cli import main
from dualtune.compare import PICTURE, figure, picture_size, summarize
from dualtune.report import trial_rows
from tests.backends import test_vertex
from tests.conftest import dualtune_argv
from tests.dualtune.mlflow_layouts import old_layout_study, record_study

# The vertex tests' fixtures: one emulator for the whole session.
emulator, vertex_env = test_vertex.emulator, test_vertex.vertex_env


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, str]:
    """(tracking URI, workdir), built once: creating a SQLite store's tables takes seconds.
    Study a (local), then b (vertex), of the toy space, each with a study record (b is the
    most recent); an old-layout study; a study of another space; two studies of a third space
    whose trials ran one epoch (or none: failed before it)."""
    root = tmp_path_factory.mktemp("compare")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    record_study(uri, "a", "local", {"0": ("COMPLETED", [3.0, 2.0]), "1": ("FAILED", [5.0])})
    record_study(uri, "b", "vertex", {"1": ("STOPPED", [4.0]), "2": ("COMPLETED", [2.5, 1.5])})
    for name in ("a", "b"):
        (root / "studies" / name).mkdir(parents=True)
        (root / "studies" / name / "study.json").write_text(json.dumps({"study": name}))
    old_layout_study(uri, "old", {"0": [0.5, 0.25], "1": [0.3, 0.2525]}, key="/w/old")
    record_study(uri, "new", "vertex", {"0": ("COMPLETED", [0.4, 0.3])}, name="other")
    one_epoch = {"0": ("COMPLETED", [0.387]), "1": ("STOPPED", [0.5]), "2": ("FAILED", [0.6])}
    record_study(uri, "one", "local", {**one_epoch, "3": ("FAILED", [])}, name="epoch1")
    record_study(uri, "none", "vertex", {"0": ("FAILED", [])}, name="epoch1")
    return uri, str(root / "studies")


def table_rows(out: str) -> dict[str, list[str]]:
    return {
        line.split()[0]: line.split()
        for line in out.splitlines()[1:]
        if not line.startswith(("picture:", "in the MLflow UI:"))
    }


def picture_shape(path) -> tuple[int, int]:
    from matplotlib.image import imread

    pixels = imread(path)
    assert pixels.std() > 0.01  # something is drawn
    return pixels.shape[1], pixels.shape[0]


def test_compare_defaults_to_every_study_of_the_latest_space(store, capsys):
    uri, workdir = store
    assert main(["compare", "--tracking-uri", uri, "--workdir", workdir]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header[:4] == ["study", "backend", "algorithm", "trials"]
    rows = table_rows(out)
    # study backend algorithm c/s/f guess best best-trial vs-guess x-noise winner to-1% epochs
    # wall; these studies were recorded without a baseline: no guess, nothing against it
    assert rows["a"][:12] == ["a", "local", "random", "1/0/1", "-", "2", "0", "-", "-", "-",
                              "1", "3"]  # fmt: skip
    assert rows["b"][:12] == ["b", "vertex", "random", "1/1/0", "-", "1.5", "2", "-", "-", "-",
                              "2", "3"]  # fmt: skip
    assert set(rows) == {"a", "b"}  # not the other space's, nor the old layout's
    picture = Path(workdir) / "b" / PICTURE
    assert f"picture: {picture}" in out
    assert picture_shape(picture) == picture_size(2)
    # The last line: the same studies as one chart in the MLflow UI (dualtune ui's link).
    experiment = MlflowClient(uri).get_experiment_by_name("toy").experiment_id
    assert re.search(
        rf"^in the MLflow UI: run `dualtune ui`, then open http://127\.0\.0\.1:5000/#/experiments/"
        rf"{experiment}/runs\?.*viewStateShareKey=dualtune-trials$",
        out.splitlines()[-1],
    ), out
    client = MlflowClient(uri)
    for study in ("a", "b"):
        parent = client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            f"tags.`dualtune.study` = '{study}' AND tags.`dualtune.role` = 'study'",
        )[0]
        assert PICTURE in [f.path for f in client.list_artifacts(parent.info.run_id)]


def test_compare_named_studies_across_layouts_to_a_chosen_file(store, isolated, capsys):
    uri, _ = store
    target = isolated / "out" / "both.png"
    assert main(["compare", "new", "old", "--output", str(target), "--tracking-uri", uri]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert rows["old"][3:12] == ["2/0/0", "-", "0.25", "0", "-", "-", "-", "1", "4"]  # 0.2525
    assert rows["new"][3:12] == ["1/0/0", "-", "0.3", "0", "-", "-", "-", "1", "2"]
    assert list(rows) == ["old", "new"]  # oldest first
    assert picture_shape(target) == picture_size(2)


def test_trials_and_compare_import_no_tensorflow(store):
    """One interpreter runs both commands, then lists the heavy packages it has imported."""
    uri, workdir = store
    check = (
        "import sys; from dualtune.cli import main; flags = sys.argv[1:]; "
        "codes = [main(['trials', *flags]), main(['compare', *flags])]; "
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', "
        "'keras_tuner'}); print('exit:', codes, 'heavy:', heavy)"
    )
    done = subprocess.run(
        [sys.executable, "-c", check, "--tracking-uri", uri, "--workdir", workdir],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "exit: [0, 0] heavy: []" in done.stdout, done.stdout + done.stderr[-3000:]
    assert "study b (vertex): 2 trials, best first" in done.stdout  # trials of the latest
    assert "picture: " in done.stdout


# -- end to end: a local and a vertex study of one space file ------------------------------------
@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.filterwarnings(r"ignore:(currentThread|getName)\(\) is deprecated")
def test_a_local_and_a_vertex_study_of_one_space_share_one_experiment(vertex_env, isolated):
    space = test_vertex.write_toy_space(isolated, test_vertex.GRID_SPACE)  # x=0.75 fails
    for study, where in (
        ("loc", ()),
        ("ver", ("--backend", "vertex", "--emulator", vertex_env.url)),
    ):
        done = subprocess.run(
            dualtune_argv(
                "tune", *where, "--space", str(space), "--study", study, "--", "--fail_above=0.5"
            ),
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{isolated / 'mlruns' / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
    assert experiment.name == "toy"
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert sorted(r.info.run_name for r in runs if r.data.tags["dualtune.role"] == "study") == [
        "local/loc",
        "vertex/ver",
    ]
    trials = [r for r in runs if r.data.tags["dualtune.role"] == "trial"]
    assert sorted(r.info.run_name for r in trials) == [
        *(f"local/loc/trial-{n}" for n in range(1, 5)),
        *(f"vertex/ver/trial-{n}" for n in range(1, 5)),
    ]
    assert {r.data.tags["dualtune.backend"] for r in trials} == {"local", "vertex"}

    done = subprocess.run(dualtune_argv("compare"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = table_rows(done.stdout)
    assert rows["loc"][1:4] == ["local", "grid", "2/0/2"]
    assert rows["ver"][1:4] == ["vertex", "grid", "2/0/2"]
    # guess +- noise, best: the toy trainer ignores its seed here, so the guess is the same on
    # both backends with noise 0; the same grid gives the same best value, and a winner
    assert rows["loc"][4:8] == rows["ver"][4:8] and rows["loc"][5:7] == ["+-", "0"]
    assert rows["loc"][11] != "-" and rows["ver"][11] != "-"
    last = done.stdout.strip().splitlines()[-4:]  # each study against the guess, in words
    assert [line.split(":")[0] for line in last] == ["loc", "  verdict", "ver", "  verdict"], last
    assert "vs guess" in last[0] and "+- 0 " in last[0], last  # the noise, stated
    picture = isolated / "studies" / "ver" / PICTURE
    assert picture_shape(picture) == picture_size(2)
    for parent in (r for r in runs if r.data.tags["dualtune.role"] == "study"):
        assert PICTURE in [f.path for f in client.list_artifacts(parent.info.run_id)]


def test_a_picture_that_cannot_be_written_is_one_line_and_leaves_no_temporary_file(
    store, isolated, capsys
):
    """The picture goes through trialkit/atomic.py's writer: here the rename over the target
    fails (it is a folder) after the whole picture was written beside it."""
    uri, _ = store
    target = isolated / "out" / "both.png"
    (target / "kept").mkdir(parents=True)  # a folder where the picture should go
    assert main(["compare", "new", "old", "--output", str(target), "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    said = rf"dualtune: error: --output: cannot write {re.escape(str(target))} \(.+\); give a"
    assert re.fullmatch(said + " writable file path", err), err
    assert sorted(p.name for p in target.parent.iterdir()) == ["both.png"]  # no .both.png.tmp-*
    assert [p.name for p in target.iterdir()] == ["kept"]
    # A folder that cannot be made (a file is in its way): one line, nothing left either.
    (isolated / "file").write_text("x")
    inside = isolated / "file" / "sub" / "c.png"
    assert main(["compare", "new", "old", "--output", str(inside), "--tracking-uri", uri]) == 2
    assert f"--output: cannot write {inside}" in capsys.readouterr().err
    assert (isolated / "file").read_text() == "x"


# -- the picture of trials of one epoch, the picture's name, the count's noun -------------------
def one_epoch_figure(uri: str):
    """The picture of studies `one` (its trials ran one epoch; one failed before it) and `none`
    (one trial, failed before its first epoch), drawn (Agg) as `compare` draws it."""
    client = MlflowClient(uri)
    summaries = []
    for name in ("one", "none"):
        parent = layout.find_study(client, name, "compare")
        summaries.append(summarize(parent, trial_rows(client, parent), minimize=True))
    fig = figure(summaries, "val_rmse")
    fig.draw_without_rendering()
    top, one, none = fig.axes
    return top, one, none


def whole_ticks_in_view(axis) -> list[float]:
    low, high = sorted(axis.get_view_interval())
    return [t for t in axis.get_majorticklocs() if low <= t <= high]


def test_one_epoch_trials_are_drawn_as_points_on_whole_epochs(store):
    """A line of one point draws nothing: each epoch has a marker (stopped hollow, failed a red
    cross); the x axis shows whole epochs, not 0.945 ... 1.05; trials with no epoch are told."""
    from matplotlib.collections import PathCollection

    uri, _ = store
    top, one, none = one_epoch_figure(uri)
    markers = [c for c in one.collections if isinstance(c, PathCollection)]
    points = {tuple(p): c for c in markers for p in c.get_offsets()}  # (epoch, value) -> drawn
    assert {(1.0, 0.387), (1.0, 0.5), (1.0, 0.6)} <= set(points)
    assert points[(1.0, 0.387)].get_facecolors()[0][3] > 0  # completed: a filled marker
    assert points[(1.0, 0.5)].get_facecolors().size == 0  # stopped: hollow
    assert points[(1.0, 0.5)].get_edgecolors()[0][3] > 0
    assert whole_ticks_in_view(one.xaxis) == [1.0]
    assert whole_ticks_in_view(top.xaxis) == [1.0, 2.0]  # two trials finished
    assert one.get_title() == "local/one\n1 failed with no epoch: not drawn"
    # A panel with no point: said in words, and no ticks (no -0.045-0.030-0.0150.000).
    assert none.get_title() == "vertex/none\n1 failed with no epoch: not drawn"
    assert [t.get_text() for t in none.texts] == ["no epoch reported"]
    for axis in (none.xaxis, none.yaxis):
        assert not any(t.label1.get_visible() or t.tick1line.get_visible()
                       for t in axis.get_major_ticks())  # fmt: skip
    assert any(t.label1.get_visible() for t in one.yaxis.get_major_ticks())  # shared y: kept


@pytest.mark.parametrize("name", ["x.txt", "compare", "x.png.bak"])
def test_an_output_that_names_no_picture_is_refused_before_anything(store, isolated, capsys, name):
    uri, _ = store
    target = isolated / "out" / name
    assert main(["compare", "one", "--output", str(target), "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    said = rf"dualtune: error: --output: {re.escape(str(target))} is not a picture name; end it"
    assert re.fullmatch(said + r" in \.png, \.svg or \.pdf \(e\.g\. --output .+\.png\)", err), err
    assert not (isolated / "out").exists()
    client = MlflowClient(uri)
    parent = layout.find_study(client, "one", "compare")
    assert name not in [f.path for f in client.list_artifacts(parent.info.run_id)]


@pytest.mark.parametrize(("name", "start"), [("c.svg", b"<?xml"), ("c.PDF", b"%PDF")])
def test_an_svg_or_pdf_output_is_written_as_such_and_is_the_artifact(store, isolated, name, start):
    uri, _ = store
    target = isolated / name
    assert main(["compare", "one", "none", "--output", str(target), "--tracking-uri", uri]) == 0
    assert target.read_bytes().startswith(start)
    client = MlflowClient(uri)
    for study in ("one", "none"):
        parent = layout.find_study(client, study, "compare")
        assert name in [f.path for f in client.list_artifacts(parent.info.run_id)]


def test_trials_counts_one_trial_in_the_singular(store, capsys):
    uri, _ = store
    assert main(["trials", "--study", "new", "--tracking-uri", uri]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "study new (vertex): 1 trial, best first"
