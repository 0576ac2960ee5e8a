"""Open Source Vizier's Gaussian-process designer behind a small ask/tell object.

Both backends use it: the local backend's `--algorithm vizier` oracle and the emulator's
ALGORITHM_UNSPECIFIED (Vertex's default) suggestions. It sees a flat list of `Dim`s: Vizier's
designers refuse conditional search spaces, so callers flatten conditions (every child is always
a dimension) and drop the inactive children from a suggestion themselves.

The designer is GP-UCB-PE, what the Vizier service runs for DEFAULT / ALGORITHM_UNSPECIFIED
(vizier/_src/service/policy_factory.py), so a local rehearsal suggests what Vertex would.
GP-Bandit (`designer="gp_bandit"`, about half the cost per suggestion) is there for benchmarks.

Optional: `pip install -e '.[vizier]'`. Everything heavy is imported inside functions; the
`vizier` modules used are private (`vizier._src...`), pinned by the extra's exact version.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install -e '.[vizier]'"
# The extra's import names: vizier itself, and what its GP designers import at run time.
_MODULES = ("vizier", "jax", "tensorflow_probability", "tf_keras")
DESIGNERS = {
    "gp_ucb_pe": "GP-UCB-PE (the Vizier service's ALGORITHM_UNSPECIFIED)",
    "gp_bandit": "GP-Bandit (the Vizier service's GAUSSIAN_PROCESS_BANDIT)",
}
DEFAULT_DESIGNER = "gp_ucb_pe"

Value = int | float | str


@dataclass(frozen=True)
class Dim:
    """One flat search dimension: kind "double" | "integer" (low..high, scale) or
    "discrete" (increasing numbers, scale) | "categorical" (strings)."""

    name: str
    kind: str
    low: float = 0.0
    high: float = 0.0
    values: tuple = ()
    scale: str = "linear"  # linear | log | reverse_log


def missing_modules() -> list[str]:
    """Import names of the vizier extra that cannot be found (empty: the extra is installed)."""
    return [name for name in _MODULES if not _findable(name)]


def _findable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken or blocked module
        return False


def available() -> bool:
    return not missing_modules()


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("google-vizier")
    except PackageNotFoundError:
        return "unknown"


class VizierDesigner:
    """Ask/tell over `dims` with one Vizier GP designer; trials are named by caller keys."""

    def __init__(
        self, dims: list[Dim], minimize: bool, seed: int, designer: str = DEFAULT_DESIGNER
    ) -> None:
        if designer not in DESIGNERS:
            raise ValueError(f"unknown Vizier designer {designer!r}; one of {sorted(DESIGNERS)}")
        self.dims = {d.name: d for d in dims}
        self.name = designer
        self._vz, self._vza, self._designer = _new_designer(dims, minimize, seed, designer)
        self._pending: dict[str, Any] = {}  # key -> vz.Trial suggested, not yet told
        self._ids = 0

    def suggest(self, key: str) -> dict[str, Value]:
        """The next point, every dimension present (integers cast), remembered under `key`."""
        self._designer.update(self._vza.CompletedTrials([]), self._active())
        suggestion = self._designer.suggest(count=1)[0]
        values = {
            name: _cast(self.dims[name], v) for name, v in suggestion.parameters.as_dict().items()
        }
        self._pending[key] = self._trial(values)
        return values

    def tell(self, key: str, value: float | None, values: dict[str, Value] | None = None) -> None:
        """The final objective of trial `key` (None or non-finite: infeasible). `values` (every
        dimension) replaces a pending suggestion, e.g. to re-feed trials after a reload."""
        trial = self._trial(values) if values is not None else self._pending.get(key)
        self._pending.pop(key, None)
        if trial is None:  # told already: Keras Tuner re-runs a trial ended just before a stop
            log.debug("Vizier designer: trial %s is not pending; not told again", key)
            return
        vz = self._vz
        if value is None or not math.isfinite(value):
            trial.complete(vz.Measurement(), infeasibility_reason="the trial failed")
        else:
            trial.complete(vz.Measurement(metrics={"objective": float(value)}))
        self._designer.update(self._vza.CompletedTrials([trial]), self._active())

    def hold(self, key: str, values: dict[str, Value]) -> None:
        """Mark `values` as running under `key` (a resumed trial the designer did not suggest)."""
        self._pending[key] = self._trial(values)

    def _trial(self, values: dict[str, Value]) -> Any:
        self._ids += 1
        return self._vz.Trial(id=self._ids, parameters=values)

    def _active(self) -> Any:
        return self._vza.ActiveTrials(list(self._pending.values()))


def _cast(dim: Dim, raw: Any) -> Value:
    if dim.kind == "integer":
        return int(round(float(raw)))
    if dim.kind == "categorical":
        return str(raw)
    return float(raw)


def _new_designer(dims: list[Dim], minimize: bool, seed: int, designer: str) -> tuple:
    """(pyvizier, algorithms, designer): imports Vizier (seconds; jax and tfp come with it)."""
    import jax

    # As the Vizier service does: the GP is written for float64 (else ~1,700 truncation
    # warnings per 20 suggestions and a less accurate fit).
    jax.config.update("jax_enable_x64", True)
    _use_compilation_cache(jax)
    from vizier import algorithms as vza
    from vizier import pyvizier as vz

    problem = vz.ProblemStatement()
    for dim in dims:
        _add(problem.search_space.root, vz, dim)
    goal = vz.ObjectiveMetricGoal.MINIMIZE if minimize else vz.ObjectiveMetricGoal.MAXIMIZE
    problem.metric_information.append(vz.MetricInformation("objective", goal=goal))
    rng = jax.random.PRNGKey(seed)
    if designer == "gp_ucb_pe":
        from vizier._src.algorithms.designers import gp_ucb_pe

        return vz, vza, gp_ucb_pe.VizierGPUCBPEBandit(problem, rng=rng)
    from vizier._src.algorithms.designers import gp_bandit

    return vz, vza, gp_bandit.VizierGPBandit(problem, rng=rng)


def compilation_cache_dir() -> str:
    """Where compiled GP functions are kept between suggestions, seeds and studies: JAX's own
    setting (JAX_COMPILATION_CACHE_DIR) if the user made one, else the user's cache folder."""
    explicit = os.environ.get("JAX_COMPILATION_CACHE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dualtune", "jax")


def _use_compilation_cache(jax: Any) -> None:
    """JAX's persistent compilation cache: every suggestion traces and compiles the GP's
    functions anew (Vizier builds new closures each time), and the compiled programs for a
    given trial count repeat across suggestions, seeds and studies. Reading them back instead
    of compiling cut a suggestion from about 15 s to 10 s (docs/vizier.md). A cache that
    cannot be used is only slower, never wrong: JAX then compiles as before."""
    if jax.config.jax_compilation_cache_dir:  # set by the user's own code
        return
    jax.config.update("jax_compilation_cache_dir", compilation_cache_dir())
    # JAX's defaults keep only compiles over 1 s; the GP's are many short ones.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def _add(root: Any, vz: Any, dim: Dim) -> None:
    scale = {
        "linear": vz.ScaleType.LINEAR,
        "log": vz.ScaleType.LOG,
        "reverse_log": vz.ScaleType.REVERSE_LOG,
    }[dim.scale]
    if dim.kind == "double":
        root.add_float_param(dim.name, float(dim.low), float(dim.high), scale_type=scale)
    elif dim.kind == "integer":
        root.add_int_param(dim.name, int(dim.low), int(dim.high), scale_type=scale)
    elif dim.kind == "discrete":
        root.add_discrete_param(dim.name, [float(v) for v in dim.values], scale_type=scale)
    elif dim.kind == "categorical":
        root.add_categorical_param(dim.name, [str(v) for v in dim.values])
    else:
        raise ValueError(f"unknown dimension kind {dim.kind!r}")
