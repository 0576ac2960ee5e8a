"""Load a search space from a YAML file (one study a file), rejecting what either target would.

Format (search_spaces/flights.yaml is a complete example)::

    name: flights                # optional; defaults to the file's stem
    metric:                      # required
      tag: val_rmse              #   the metric the trainer reports through cloudml-hypertune
      goal: minimize             #   minimize | maximize
    parameters:                  # required: name -> fields, in declaration order
      learning_rate: {type: double, min: 1e-4, max: 1e-2, scale: log}
      nbuckets: {type: integer, min: 5, max: 10}
      units: {type: integer, min: 16, max: 256, step: 2, scale: log}   # 16, 32, ..., 256
      dnn_hidden_units: {type: categorical, values: ["64,16", "256,64,16"]}
      batch_size: {type: discrete, values: [16, 32, 64]}
      optimizer: {type: categorical, values: [adam, sgd], default: adam}
      beta_1:
        type: double
        min: 0.8
        max: 0.99
        condition: {parent: optimizer, values: [adam]}   # active only when optimizer=adam
      use_bias: {type: boolean}
      seed: {type: fixed, value: 42}
    trainer:                     # optional; default module: trainer.task, no args
      module: trainer.task       #   python -m MODULE; or script: path/to/train.py
                                 #   (relative to this file's directory), not both
      tuning_args: ["--num_epochs=3"]      # appended to every tuning trial
      finalize_args: ["--num_epochs=10"]   # for the final run with the best values
      seed_flag: --seed          #   optional: the trainer's training-seed flag; repeated runs
                                 #   get --seed=N each (without it they are plain re-runs)
    budget: {max_trials: 10, parallel_trials: 2, max_failed_trials: 3}   # optional
    algorithm: bayesian          # bayesian | random | grid | hyperband (local only) | vizier
    measurement_selection: best  # best | last: which measurement of a trial counts
    early_stopping:              # optional
      policy: none               #   none | median | decay_curve (Vertex's stopping specs)
      use_elapsed_duration: false
      min_steps: 1               #   local backend only: first step at which to stop
      min_trials: 1              #   local backend only: completed trials needed first
    hyperband_max_epochs: 4      # optional; algorithm: hyperband only
    trust:                       # optional; these are the defaults
      baseline: {repeats: 2}     #   the guess (trainer defaults) run at 2 seeds: the noise
      confirm: {top: 3, repeats: 2}  # the 3 best trials re-run at 2 fresh seeds each before
                                 #   the winner is named (the baseline competes)
      executions_per_trial: 1    #   run each trial N times (seeds differ); its score is the mean

`trust.baseline: false` and `trust.confirm: false` turn those runs off (`true` keeps the
defaults); every count is a whole number >= 1, so 0 is refused rather than read as "off".

Parameter types and their fields (every type also takes `condition`):

    integer, double   min, max (inclusive), scale (linear | log | reverse_log), step, default
    categorical       values (unique non-empty strings), default
    discrete          values (at most 1,000 strictly increasing numbers), scale, default
    boolean           default
    fixed             value (a number, string or boolean), passed to the trainer as a flag

`step` follows Keras Tuner: added between values on a linear scale, multiplied (> 1) on a
log or reverse_log scale; a stepped range becomes a list of at most 1,000 values on Vertex.
A `condition` names an earlier integer, discrete, categorical or boolean parent and the
parent values that activate the child. YAML 1.2 scalars apply: 1e-4 is a number and only
true/false are booleans (yes, no, on, off are strings).

Every violation raises SpaceError with one line naming the file, the field and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from search_spaces.model import (
    PARAMETER_TYPES,
    Baseline,
    Budget,
    Condition,
    Confirm,
    EarlyStopping,
    Metric,
    Parameter,
    SearchSpace,
    Trainer,
    Trust,
    did_you_mean,
    fields_for,
)
from trialkit.errors import SpaceError

TOP_KEYS = (
    "name",
    "metric",
    "parameters",
    "trainer",
    "budget",
    "algorithm",
    "measurement_selection",
    "early_stopping",
    "hyperband_max_epochs",
    "trust",
)
PARAMETER_KEYS = ("type", "min", "max", "scale", "step", "values", "value", "default", "condition")
TRAINER_KEYS = ("module", "script", "tuning_args", "finalize_args", "seed_flag")
TRUST_KEYS = ("baseline", "confirm", "executions_per_trial")

_HINTS = {
    "metric": "add metric: {tag: val_rmse, goal: minimize}",
    "parameters": "add parameters: with at least one parameter to tune",
    "metric.tag": "name the metric the trainer reports through hypertune, e.g. tag: val_rmse",
    "metric.goal": "add goal: minimize or goal: maximize",
    "condition.parent": "name the parent parameter, e.g. parent: optimizer",
    "condition.values": "list the parent values that activate it, e.g. values: [adam]",
    "type": "add type: integer, double, categorical, discrete, boolean or fixed",
}

# Why a field that exists for other types is refused for this one.
_WRONG_FIELD = {
    "step": "remove it: only integer and double ranges take a step",
    "scale": "remove it: Vertex CATEGORICAL (what this compiles to) has no scale",
    "values": "remove it, or use type: discrete to list numbers (categorical for strings)",
    "min": "remove it, or use type: integer or double for a range",
    "max": "remove it, or use type: integer or double for a range",
    "value": "remove it, or use type: fixed for a constant",
    "default": "remove it: a fixed parameter's value is its only value",
}


def load_space(path: str | Path) -> SearchSpace:
    """Read and validate the search space in the YAML file at `path`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpaceError(f"{path}: no such file; check the path") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpaceError(f"{path}: cannot read it ({e}); give a readable UTF-8 YAML file") from None
    return load_space_text(text, source=str(path), base_dir=path.parent, name=path.stem)


def load_space_text(
    text: str, source: str = "<text>", base_dir: str | Path | None = None, name: str | None = None
) -> SearchSpace:
    """Validate the YAML `text`; `source` names it in messages, `base_dir` anchors script paths."""
    data = _parse(text, source)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    try:
        return _build(data, source, base, name or Path(source).stem)
    except SpaceError as e:
        raise SpaceError(f"{source}: {e}") from None


# -- YAML -----------------------------------------------------------------------------------------


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, first: int) -> None:
        super().__init__(key)
        self.key, self.line, self.first = key, line, first


class _TooLarge(Exception):
    def __init__(self, line: int, recursive: bool) -> None:
        super().__init__(line)
        self.line, self.recursive = line, recursive


MAX_EXPANDED_NODES = 1_000_000  # a space file is a few hundred nodes; a long list, 100,000s


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 scalars (1e-4 is a float; yes/no/on/off are strings) that
    refuses duplicate keys instead of keeping the last one, and refuses a document whose
    aliases expand past MAX_EXPANDED_NODES (an alias bomb: 600 bytes of nested anchors that
    every later walk of the data, a repr included, would expand to gigabytes)."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_expanded_size(node)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            lines: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in lines:
                        raise _DuplicateKey(key, line, lines[key])
                    lines[key] = line
                except TypeError:  # unhashable key: SafeLoader reports it with its line
                    break
        return super().construct_mapping(node, deep=deep)


def _check_expanded_size(root: yaml.Node) -> None:
    """Count the nodes of `root` with every alias spelled out, without spelling any out: each
    distinct node's expanded size is computed once (memoised), so the count is linear in the
    file. Raises _TooLarge past the limit or for an alias that contains itself."""
    sizes: dict[int, int] = {}
    pending: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in pending:
            raise _TooLarge(node.start_mark.line + 1, recursive=True)
        pending.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        pending.discard(key)
        if total > MAX_EXPANDED_NODES:
            raise _TooLarge(node.start_mark.line + 1, recursive=False)
        sizes[key] = total
        return total

    size(root)


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def _parse(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except _TooLarge as e:
        what = (
            "an alias that contains itself"
            if e.recursive
            else (f"aliases that expand to more than {MAX_EXPANDED_NODES:,} values")
        )
        raise SpaceError(
            f"{source}:{e.line}: {what} (nested YAML anchors); write the values out or use "
            "fewer, flatter aliases"
        ) from None
    except RecursionError:
        raise SpaceError(
            f"{source}: nested too deeply to read; flatten the YAML structure"
        ) from None
    except _DuplicateKey as e:
        raise SpaceError(
            f"{source}:{e.line}: duplicate key {e.key!r} (first at line {e.first}); "
            "each name may appear once in a mapping: rename or remove one"
        ) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = " ".join(f"{e.context or ''} {e.problem or ''}".split())
        raise SpaceError(
            f"{where}: YAML syntax error: {problem}; fix the indentation or quoting on that line"
        ) from None
    except yaml.YAMLError as e:
        raise SpaceError(
            f"{source}: YAML error: {' '.join(str(e).split())}; fix the file"
        ) from None


# -- structure ------------------------------------------------------------------------------------


def _error(path: str, problem: str, fix: str) -> SpaceError:
    return SpaceError(f"{path}: {problem}; {fix}")


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"{value!r}"


def _check_keys(
    raw: Any, path: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()
) -> dict:
    """`raw` is a mapping whose keys are all `allowed` and hold every `required` key."""
    if not isinstance(raw, dict):
        raise _error(
            path or "top level", f"must be a mapping (got {_kind(raw)})", "write key: value lines"
        )
    for key in raw:
        if key not in allowed:
            raise _error(
                _join(path, key),
                f"unknown key{did_you_mean(key, allowed)}",
                f"use one of {', '.join(allowed)}",
            )
    for key in required:
        if raw.get(key) is None:
            full = _join(path, key)
            tails = (full, ".".join(full.split(".")[-2:]), key)
            hint = next((_HINTS[t] for t in tails if t in _HINTS), "add it")
            raise _error(full, "missing", hint)
    return raw


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _build(data: Any, source: str, base_dir: Path, default_name: str) -> SearchSpace:
    if data is None:
        raise _error("top level", "the file is empty", "start with metric: and parameters:")
    _check_keys(data, "", TOP_KEYS, required=("metric", "parameters"))
    metric = Metric(**_check_keys(data["metric"], "metric", ("tag", "goal"), ("tag", "goal")))
    trainer = _trainer(data.get("trainer"), base_dir)
    budget = Budget(
        **_section(data, "budget", ("max_trials", "parallel_trials", "max_failed_trials"))
    )
    stopping = EarlyStopping(
        **_section(
            data,
            "early_stopping",
            ("policy", "min_steps", "min_trials", "use_elapsed_duration"),
        )
    )
    optional = {
        k: data[k]
        for k in ("algorithm", "measurement_selection", "hyperband_max_epochs")
        if data.get(k) is not None
    }
    return SearchSpace(
        name=data.get("name", default_name),
        parameters=_parameters(data["parameters"]),
        metric=metric,
        trainer=trainer,
        budget=budget,
        early_stopping=stopping,
        source=source,
        trust=_trust(data.get("trust")),
        **optional,
    )


def _section(data: dict, key: str, allowed: tuple[str, ...]) -> dict:
    raw = data.get(key)
    return {} if raw is None else _check_keys(raw, key, allowed)


def _trainer(raw: Any, base_dir: Path) -> Trainer:
    if raw is None:
        return Trainer()
    _check_keys(raw, "trainer", TRAINER_KEYS)
    module, script = raw.get("module"), raw.get("script")
    if module is not None and script is not None:
        raise _error(
            "trainer",
            "gives both module and script",
            "keep one: module: pkg.mod or script: file.py",
        )
    if module is None and script is None:
        raise _error(
            "trainer", "needs module or script", "e.g. module: trainer.task or script: train.py"
        )
    args = {
        k: raw[k] for k in ("tuning_args", "finalize_args", "seed_flag") if raw.get(k) is not None
    }
    if script is None:
        return Trainer(module=module, **args)
    return Trainer(script=_script_path(script, base_dir), **args)


def _script_path(script: Any, base_dir: Path) -> str:
    if not isinstance(script, str) or not script.strip():
        raise _error(
            "trainer.script", f"must be a path (got {_kind(script)})", "e.g. script: train.py"
        )
    path = Path(script).expanduser()
    path = (path if path.is_absolute() else base_dir / path).resolve()
    if not path.is_file():
        raise _error(
            "trainer.script",
            f"no such file {path}",
            "give a path relative to the YAML file's directory (or an absolute one)",
        )
    return str(path)


def _parameters(raw: Any) -> tuple[Parameter, ...]:
    if isinstance(raw, list):
        raise _error(
            "parameters",
            "must be a mapping of name -> fields (got a list)",
            "write e.g. learning_rate: {type: double, min: 1e-4, max: 1e-2}",
        )
    if raw == {}:
        raise _error("parameters", "empty", "declare at least one parameter to tune")
    if not isinstance(raw, dict):
        raise _error(
            "parameters", f"must be a mapping (got {_kind(raw)})", "write name: fields lines"
        )
    return tuple(_parameter(name, spec) for name, spec in raw.items())


def _parameter(name: Any, spec: Any) -> Parameter:
    path = f"parameters.{name}"
    if not isinstance(name, str):
        raise _error(path, f"a parameter name must be a string (got {name!r})", "quote the name")
    if not isinstance(spec, dict):
        raise _error(
            path,
            f"must be a mapping of fields (got {_kind(spec)})",
            f"e.g. {name}: {{type: fixed, value: {spec}}} or {{type: double, min: 0, max: 1}}",
        )
    _check_keys(spec, path, PARAMETER_KEYS, required=("type",))
    type_ = spec["type"]
    if type_ not in PARAMETER_TYPES:
        raise _error(
            f"{path}.type",
            f"unknown type {type_!r}{did_you_mean(type_, PARAMETER_TYPES)}",
            f"use one of {', '.join(PARAMETER_TYPES)}",
        )
    allowed = ("type", "condition", *fields_for(type_))
    for key in spec:
        if key not in allowed:
            raise _error(f"{path}.{key}", f"{type_} parameters take no {key}", _WRONG_FIELD[key])
    fields = {k: v for k, v in spec.items() if k != "condition"}
    for key in ("values",):
        if key in fields and not isinstance(fields[key], list):
            raise _error(
                f"{path}.{key}", f"must be a list (got {_kind(fields[key])})", "e.g. [a, b]"
            )
    return Parameter(name=name, condition=_condition(path, spec.get("condition")), **fields)


def _condition(path: str, raw: Any) -> Condition | None:
    if raw is None:
        return None
    path = f"{path}.condition"
    _check_keys(raw, path, ("parent", "values"), required=("parent", "values"))
    if not isinstance(raw["values"], list):
        raise _error(
            f"{path}.values",
            f"must be a list (got {_kind(raw['values'])})",
            f"write values: [{raw['values']}]",
        )
    return Condition(parent=raw["parent"], values=tuple(raw["values"]))


# -- trust ----------------------------------------------------------------------------------------


def _trust(raw: Any) -> Trust:
    """trust: {baseline: {repeats} | true | false, confirm: {top, repeats} | true | false,
    executions_per_trial}; a missing section or key keeps its default (on)."""
    if raw is None:
        return Trust()
    _check_keys(raw, "trust", TRUST_KEYS)
    sections = {
        "baseline": _switchable(raw.get("baseline"), "trust.baseline", Baseline, ("repeats",)),
        "confirm": _switchable(raw.get("confirm"), "trust.confirm", Confirm, ("top", "repeats")),
    }
    if raw.get("executions_per_trial") is not None:
        sections["executions_per_trial"] = raw["executions_per_trial"]
    return Trust(**sections)


def _switchable(raw: Any, path: str, kind: type, keys: tuple[str, ...]) -> Any:
    """A section that is a mapping of counts, or true (defaults) / false (off)."""
    if raw is None or raw is True:
        return kind()
    if raw is False:
        return kind(enabled=False)
    if not isinstance(raw, dict):
        example = ", ".join(f"{k}: 2" for k in keys)
        raise _error(
            path,
            f"must be a mapping or true/false (got {_kind(raw)})",
            f"write e.g. {path.split('.')[-1]}: {{{example}}}, or false to turn it off",
        )
    return kind(**_check_keys(raw, path, keys))
