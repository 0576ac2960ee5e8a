"""`--algorithm vizier`: a Keras Tuner Oracle whose suggestions come from Open Source Vizier.

The local backend drives every oracle the same way (create_trial, update_trial, end_trial), so
this one only answers populate_space from the designer and tells it each trial's end; early
stopping, failure counting and resume stay dualtune's. Conditions are flattened for the designer
(see trialkit/vizier_designer.py) and the inactive children dropped from what the trial gets.

State: Keras Tuner saves the trials; this oracle adds every trial's full (flat) point. On reload
a fresh designer is re-fed the ended trials and told which are still running, so `--resume`
continues the same search (the designer's random stream restarts; its data does not).

Imported only when a vizier oracle is built (Keras Tuner and Vizier are heavy).
"""

from __future__ import annotations

from typing import Any

import keras_tuner as kt

from search_spaces.model import Parameter, SearchSpace
from search_spaces.vertex_compiler import categories, discrete_values, flag_text, vertex_type
from trialkit.vizier_designer import DEFAULT_DESIGNER, Dim, Value, VizierDesigner


class VizierOracle(kt.Oracle):
    """Keras Tuner's Oracle interface over a VizierDesigner (GP-UCB-PE by default)."""

    def __init__(self, space: SearchSpace, designer: str = DEFAULT_DESIGNER, **kwargs: Any):
        super().__init__(**kwargs)
        self.space = space
        self.designer_name = designer
        self.flat: dict[str, dict[str, Value]] = {}  # trial id -> every dimension's value
        self._designer: VizierDesigner | None = None

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        point = self._ensure_designer().suggest(trial_id)
        self.flat[trial_id] = point
        return {"status": "RUNNING", "values": active_values(self.space, point)}

    def end_trial(self, trial: Any) -> None:
        super().end_trial(trial)
        ended = self.trials[trial.trial_id]
        if ended.status == "COMPLETED":
            self._ensure_designer().tell(ended.trial_id, ended.score)
        elif ended.status == "FAILED":
            self._ensure_designer().tell(ended.trial_id, None)
        # INVALID: Keras Tuner retries it with the same values; it stays pending.

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state["vizier"] = {"designer": self.designer_name, "flat": self.flat}
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.flat = dict(state.get("vizier", {}).get("flat", {}))
        self._designer = None  # rebuilt, and re-fed, on first use

    def _ensure_designer(self) -> VizierDesigner:
        if self._designer is None:
            designer = VizierDesigner(
                dimensions(self.space), self.space.metric.minimize, self.seed, self.designer_name
            )
            ended = set(self.end_order)
            for trial_id in self.start_order:  # a reloaded study: what the designer had seen
                trial = self.trials[trial_id]
                point = self.flat.get(trial_id) or flat_point(self.space, trial.hyperparameters)
                if trial_id not in ended:
                    designer.hold(trial_id, point)
                elif trial.status == "COMPLETED":
                    designer.tell(trial_id, trial.score, point)
                else:
                    designer.tell(trial_id, None, point)
            self._designer = designer
        return self._designer


def dimensions(space: SearchSpace) -> list[Dim]:
    """Every tunable parameter as a flat dimension (fixed ones are not searched)."""
    return [_dim(p) for p in space.parameters if p.type != "fixed"]


def _dim(p: Parameter) -> Dim:
    """The dimension `p` is on Vertex (search_spaces/vertex_compiler.py decides the type)."""
    kind = vertex_type(p)
    if kind == "CATEGORICAL":
        return Dim(p.name, "categorical", values=tuple(categories(p)))
    if kind == "DISCRETE":
        return Dim(p.name, "discrete", values=discrete_values(p), scale=p.scale)
    return Dim(p.name, p.type, low=p.min, high=p.max, scale=p.scale)


def active_values(space: SearchSpace, point: dict[str, Value]) -> dict[str, Any]:
    """The trial's values: `point` cast to the declared types, inactive children dropped,
    fixed parameters added. Parents are declared before their children."""
    chosen: dict[str, Any] = {}
    for p in space.parameters:
        if p.condition is not None:
            parent = space.parameter(p.condition.parent)
            if p.condition.parent not in chosen or chosen[p.condition.parent] not in {
                parent.cast(v) for v in p.condition.values
            }:
                continue
        chosen[p.name] = p.value if p.type == "fixed" else p.cast(point[p.name])
    return chosen


def flat_point(space: SearchSpace, hyperparameters: Any) -> dict[str, Value]:
    """A full point for a trial saved without one (inactive children: their lowest value)."""
    values = hyperparameters.values
    point: dict[str, Value] = {}
    for dim in dimensions(space):
        if dim.name in values:
            raw = values[dim.name]
            point[dim.name] = flag_text(raw) if isinstance(raw, bool) else raw
        else:
            point[dim.name] = dim.values[0] if dim.values else dim.low
    return point
