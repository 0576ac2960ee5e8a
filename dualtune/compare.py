"""`dualtune compare`: studies of one search space side by side, from MLflow.

A table (a row per study: backend, algorithm, trials by outcome, the guess (the trainer's
defaults, the baseline's mean +- its spread over seeds: the noise), the best value and its
trial, the best against the guess (relative, and in units of noise), the confirmed winner, how
many trials it took to come within 1% of the best, epochs spent, wall time) and one picture:
each study's best-so-far against trials finished with its guess as a band (mean +- noise), and
every trial's per-epoch curve. The
picture (PNG, or the SVG or PDF `--output` names) goes into the most recent compared study's
directory and onto each compared study's parent run in MLflow as an artifact of its name.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dualtune import mlflow_layout as layout
from dualtune import study_record
from dualtune.display import sig
from dualtune.mlflow_layout import TrialRow
from dualtune.report import study_verdict, trial_rows
from dualtune.tracking import store_client
from dualtune.verdict import Verdict
from trialkit.atomic import atomic_file
from trialkit.errors import UserError
from trialkit.status import COMPLETED, FAILED, STOPPED, best_of, better, usable

log = logging.getLogger(__name__)

PICTURE = "compare.png"
WITHIN = 0.01  # "close to the best": within 1% of it
OUTCOMES = (COMPLETED, STOPPED, FAILED)  # the table's c/s/f column


@dataclass(frozen=True)
class StudySummary:
    study: str
    backend: str
    algorithm: str
    run_id: str
    counts: dict[str, int]  # COMPLETED / STOPPED / FAILED -> trials
    best: TrialRow | None
    best_so_far: tuple[float, ...]  # after each finished trial, in the order they finished
    to_within: int | None  # finished trials until within WITHIN of the best
    epochs: int
    wall_s: float
    rows: tuple[TrialRow, ...]
    verdict: Verdict | None = None  # None: a study recorded before studies had one


def compare(
    names: list[str], tracking_uri: str | None, workdir: Path, output: Path | None = None
) -> int:
    """Print the table, write the picture, log it on each study's parent run."""
    if output is not None:
        picture_format(output)  # a name that is no picture: refused before anything is done
    latest = None if names else _latest(workdir)
    uri, mlflow_client = store_client(tracking_uri, "compare", names[0] if names else latest)
    parents = _parents(mlflow_client, names, latest)
    metric, minimize = _one_metric(parents)
    summaries = []
    for parent in parents:
        rows = trial_rows(mlflow_client, parent)
        verdict = study_verdict(mlflow_client, parent, rows)
        summaries.append(summarize(parent, rows, minimize, verdict))
    for line in table(summaries, metric):
        print(line)
    path = output or _picture_path(workdir, summaries[-1].study, parents[-1])
    draw(summaries, metric, path)
    for summary in summaries:
        mlflow_client.log_artifact(summary.run_id, str(path))
    print(f"picture: {path.resolve()} (also artifact {path.name} of each study's run in MLflow)")
    print(_ui_line(uri, mlflow_client, parents[-1]))
    for summary in summaries:  # last, so that `make tune` ends with the verdict in words
        if summary.verdict is not None:
            print(f"{summary.study}: {summary.verdict.best_line}")
            print(f"  verdict: {summary.verdict.words}")
    return 0


def _ui_line(uri: str, mlflow_client: Any, parent: Any) -> str:
    """Where every trial of these studies is one chart in the MLflow UI (see dualtune/ui.py)."""
    from dualtune.ui import link_for, ui_base

    link = link_for(mlflow_client, parent, ui_base(uri))
    if uri.startswith(("http://", "https://")):
        return f"in the MLflow UI: {link}"
    return f"in the MLflow UI: run `dualtune ui`, then open {link}"


def _latest(workdir: Path) -> str:
    try:
        return study_record.find(workdir, None).name
    except UserError:
        raise UserError(
            f"compare: no study in {workdir} to start from; run `dualtune tune` first, or name "
            f"the studies: dualtune compare STUDY [STUDY ...]"
        ) from None


def _parents(mlflow_client: Any, names: list[str], latest: str | None) -> list[Any]:
    """The named studies' parent runs, oldest first, or every study of the latest's space."""
    if names:
        found = [layout.find_study(mlflow_client, n, "compare") for n in dict.fromkeys(names)]
        return sorted(found, key=lambda r: r.info.start_time or 0)
    experiment = layout.find_study(mlflow_client, latest, "compare").info.experiment_id
    return layout.study_parents(mlflow_client, experiment)


def _one_metric(parents: list[Any]) -> tuple[str, bool]:
    metrics = {layout.metric_of(p): layout.study_of(p) for p in parents}
    if len(metrics) > 1:
        shown = ", ".join(
            f"{study} ({tag}, {'minimize' if low else 'maximize'})"
            for (tag, low), study in metrics.items()
        )
        raise UserError(
            f"compare: the studies measure different metrics: {shown}; "
            f"choose studies of one metric and goal"
        )
    return next(iter(metrics))


def summarize(
    parent: Any, rows: list[TrialRow], minimize: bool, verdict: Verdict | None = None
) -> StudySummary:
    """One study's row of the table, and what the picture needs."""
    counts = {s: sum(r.status == s for r in rows) for s in OUTCOMES}
    finished = sorted(
        (r for r in rows if usable(r.status, r.final)),
        key=lambda r: (r.ended or math.inf, r.number),
    )
    best_so_far: list[float] = []
    for row in finished:
        last = best_so_far[-1] if best_so_far else None
        best_so_far.append(row.final if better(row.final, last, minimize) else last)
    best = best_so_far[-1] if best_so_far else None
    best_row = best_of(((r, r.status, r.final) for r in rows), minimize)
    to_within = next(
        (i for i, v in enumerate(best_so_far, 1) if abs(v - best) <= WITHIN * abs(best)), None
    )
    end = parent.info.end_time or time.time() * 1000
    return StudySummary(
        study=layout.study_of(parent),
        backend=layout.backend_of(parent),
        algorithm=layout.algorithm_of(parent),
        run_id=parent.info.run_id,
        counts=counts,
        best=best_row[0] if best_row else None,
        best_so_far=tuple(best_so_far),
        to_within=to_within,
        epochs=sum(r.epochs for r in rows),
        wall_s=max(0.0, (end - (parent.info.start_time or end)) / 1000),
        rows=tuple(rows),
        verdict=verdict,
    )


def table(summaries: list[StudySummary], metric: str) -> list[str]:
    """The table's lines: a header, then a row per study, oldest first."""
    head = ("study", "backend", "algorithm", "trials c/s/f", "guess +- noise", f"best {metric}",
            "best trial", "vs guess", "x noise", "winner", "to 1%", "epochs", "wall")  # fmt: skip
    body = [
        (
            s.study,
            s.backend,
            s.algorithm,
            "/".join(str(s.counts[k]) for k in OUTCOMES),
            _guess(s.verdict),
            sig(s.best.final) if s.best else "-",
            s.best.trial_id if s.best else "-",  # as `dualtune trials` and the display name it
            *_against_guess(s.verdict),
            (s.verdict.winner or "-") if s.verdict else "-",
            str(s.to_within) if s.to_within else "-",
            str(s.epochs),
            duration(s.wall_s),
        )
        for s in summaries
    ]
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
    return [
        "  ".join(
            c.ljust(w) if i < 3 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in (head, *body)
    ]


def _guess(verdict: Verdict | None) -> str:
    """`0.2093 +- 0.0031`; `-` without a baseline."""
    if verdict is None or verdict.guess is None:
        return "-"
    noise = f"{verdict.noise:.2g}" if verdict.noise is not None else "?"
    return f"{sig(verdict.guess.mean)} +- {noise}"


def _against_guess(verdict: Verdict | None) -> tuple[str, str]:
    """The best trial against the guess: (relative %, in units of noise); better is +."""
    c = verdict.best_vs_guess if verdict else None
    if c is None:
        return "-", "-"
    relative = f"{c.relative_pct:+.1f}%" if c.relative_pct is not None else "-"
    return relative, f"{c.in_noise:+.1f}" if c.in_noise is not None else "-"


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _picture_path(workdir: Path, study: str, parent: Any) -> Path:
    """The most recent compared study's directory, or (a study recorded elsewhere) the cwd."""
    directory = workdir / study
    if (directory / "study.json").is_file():
        return directory / PICTURE
    space = layout.space_of(parent) or study
    return Path(f"compare-{space}.png")


# -- the picture ----------------------------------------------------------------------------------
COLUMNS = 3  # trial-curve panels per row
DPI = 100
WIDTH_IN, TOP_IN, PANEL_IN = 12.0, 3.5, 3.0
FORMATS = (".png", ".svg", ".pdf")  # what `--output` may name: formats matplotlib writes
MARKER_SIZE = 12  # points^2: a dot on each epoch, small beside a thousand trials' curves
CURVE_STYLES = {  # status -> (line style, marker on each epoch, hollow marker)
    COMPLETED: ("solid", "o", False),
    STOPPED: ("dashed", "o", True),
    FAILED: ("dotted", ".", False),
}


def picture_size(studies_shown: int) -> tuple[int, int]:
    """(width, height) in pixels of the picture for this many studies."""
    rows = math.ceil(studies_shown / COLUMNS)
    return int(WIDTH_IN * DPI), int((TOP_IN + PANEL_IN * rows) * DPI)


def picture_format(path: Path) -> str:
    """The format the picture is written in, from `path`'s suffix (.png, .svg or .pdf): what is
    written is what the name says, in the folder and as the artifact of the same name in MLflow.
    Any other name is refused before anything is read or written."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UserError(
            f"--output: {path} is not a picture name; end it in {', '.join(FORMATS[:-1])} or "
            f"{FORMATS[-1]} (e.g. --output {path.with_suffix('.png').name})"
        )
    return suffix[1:]


def draw(summaries: list[StudySummary], metric: str, path: Path) -> None:
    """Write the picture atomically, in the format its suffix names (picture_format)."""
    fmt = picture_format(path)
    fig = figure(summaries, metric)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as fh:  # a failure leaves no temporary file
            fig.savefig(fh, format=fmt)
    except OSError as exc:
        raise UserError(
            f"--output: cannot write {path} ({exc.strerror or exc}); give a writable file path"
        ) from None


def figure(summaries: list[StudySummary], metric: str) -> Any:
    """The picture: best-so-far per study on top, then per study every trial's curve, a marker
    on each epoch (completed solid, stopped dashed with hollow markers, failed red and dotted,
    ending in a cross); a panel's title counts the trials it has no epoch of to draw."""
    from matplotlib.figure import Figure  # no pyplot: no global state, the Agg canvas

    columns = min(len(summaries), COLUMNS)
    rows = math.ceil(len(summaries) / columns)
    width, height = picture_size(len(summaries))
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    grid = fig.add_gridspec(1 + rows, columns, height_ratios=[TOP_IN] + [PANEL_IN] * rows)
    colors = [f"C{i % 10}" for i in range(len(summaries))]
    _best_so_far(fig.add_subplot(grid[0, :]), summaries, colors, metric)
    first = None
    for i, (summary, color) in enumerate(zip(summaries, colors, strict=True)):
        ax = fig.add_subplot(grid[1 + i // columns, i % columns], sharey=first)
        first = first or ax
        ax.set(xlabel="epoch", ylabel=metric if i % columns == 0 else None)
        title = f"{summary.backend}/{summary.study}"
        missing = _no_epoch(summary.rows)
        ax.set_title(f"{title}\n{missing}" if missing else title, fontsize="medium")
        steps = _curves(ax, summary, color)
        _integer_axis(ax, steps, "no epoch reported")
    _outcome_legend(first)
    return fig


def _best_so_far(ax: Any, summaries: list[StudySummary], colors: list[str], metric: str) -> None:
    for summary, color in zip(summaries, colors, strict=True):
        xs = range(1, len(summary.best_so_far) + 1)
        marker = "." if len(xs) <= 50 else None
        ax.step(xs, summary.best_so_far, where="post", color=color, marker=marker,
                label=f"{summary.backend}/{summary.study}")  # fmt: skip
        _guess_band(ax, summary, color)
    ax.set(xlabel="trials finished", ylabel=f"best {metric} so far")
    ax.set_title("best so far")
    ax.legend(loc="best", fontsize="small")
    finished = max(len(s.best_so_far) for s in summaries)
    _integer_axis(ax, [1, finished] if finished else [], "no trial finished")


def _integer_axis(ax: Any, xs: list[int], empty: str) -> None:
    """Whole numbers on the x axis (epochs, trials), at least one tick even for one point (a
    default MaxNLocator falls back to 0.945 ... 1.05 with fewer than two whole numbers in
    view); with no point at all, `empty` in words and no ticks to misread."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if not xs:
        ax.text(0.5, 0.5, empty, transform=ax.transAxes, ha="center", va="center", color="grey")
        ax.tick_params(bottom=False, labelbottom=False, left=False, labelleft=False)
        return
    ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)


def _no_epoch(rows: tuple[TrialRow, ...]) -> str:
    """`1 failed, 2 stopped with no epoch: not drawn`; empty when every trial has a point."""
    counts = {s: sum(r.status == s and not r.history for r in rows) for s in OUTCOMES}
    shown = [f"{n} {str(s).lower()}" for s, n in counts.items() if n]
    return f"{', '.join(shown)} with no epoch: not drawn" if shown else ""


def _guess_band(ax: Any, summary: StudySummary, color: str) -> None:
    """The study's guess on the best-so-far panel: its mean dashed, mean +- noise a band."""
    verdict = summary.verdict
    if verdict is None or verdict.guess is None:
        return
    mean = verdict.guess.mean
    ax.axhline(
        mean,
        color=color,
        linestyle="--",
        linewidth=1.0,
        label=f"{summary.study}: guess, mean +- noise",
    )
    if verdict.noise:
        ax.axhspan(mean - verdict.noise, mean + verdict.noise, color=color, alpha=0.12)


def _curves(ax: Any, summary: StudySummary, color: str) -> list[int]:
    """Every trial's curve, one LineCollection per outcome (a thousand trials draw fast), and a
    marker on each of its epochs, so that a trial of one epoch shows; the epochs drawn."""
    from matplotlib.collections import LineCollection

    alpha = max(0.08, min(0.6, 30 / max(1, len(summary.rows))))  # many trials: fainter lines
    steps: list[int] = []
    for status, (linestyle, marker, hollow) in CURVE_STYLES.items():
        lines = [r.history for r in summary.rows if r.status == status and r.history]
        if not lines:
            continue
        drawn = "red" if status == FAILED else color
        shade = 0.8 if status == FAILED else alpha
        ax.add_collection(
            LineCollection(lines, linewidths=1.0, colors=drawn, linestyles=linestyle, alpha=shade)
        )
        points = [p for line in lines for p in line]
        face = "none" if hollow else drawn
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        ax.scatter(xs, ys, s=MARKER_SIZE, marker=marker, facecolors=face, edgecolors=drawn,
                   alpha=shade)  # fmt: skip
        steps.extend(p[0] for p in points)
    failed = [r.history[-1] for r in summary.rows if r.status == FAILED and r.history]
    if failed:
        ax.scatter(
            [p[0] for p in failed], [p[1] for p in failed], marker="x", color="red", zorder=3
        )
    ax.autoscale_view()
    return steps


def _outcome_legend(ax: Any) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color="grey", linestyle="solid", marker="o", markersize=4,
               label="completed"),
        Line2D([], [], color="grey", linestyle="dashed", marker="o", markersize=4,
               markerfacecolor="none", label="stopped"),
        Line2D([], [], color="red", linestyle="dotted", marker="x", label="failed"),
    ]  # fmt: skip
    ax.legend(handles=handles, loc="upper right", fontsize="small")
