"""How a trainer reaches Vertex: the training image, the trainer's package, the CustomJob.

A module trainer (trainer.task) ships as an sdist of its top-level package built here with a
generated setup.py; a script trainer goes through CustomJob.from_local_script. Both run on a
prebuilt Vertex TensorFlow image, so worker pools get a pythonPackageSpec and Vertex appends each
trial's --name=value flags to the trainer's own argv (docs/vertex.md, "What is submitted": with
any other image from_local_script wraps the trainer in `sh -c` and the flags are lost).
"""

from __future__ import annotations

import importlib.machinery
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trialkit
from trialkit.errors import BackendError, UserError
from trialkit.repeat import MODULE as REPEAT_MODULE

log = logging.getLogger(__name__)

# The newest TensorFlow with a prebuilt Vertex training image that this code knows of
# (tf-cpu/tf-gpu.2-17.py310, per Google's list of prebuilt training containers).
NEWEST_TF_IMAGE = (2, 17)
HYPERTUNE = "cloudml-hypertune"
PACKAGE_NAME = "dualtune_trainer"
TRIALKIT = Path(trialkit.__file__).resolve().parent


@dataclass(frozen=True)
class Machine:
    """Where each trial runs."""

    machine_type: str = "n1-standard-4"
    accelerator_type: str | None = None
    accelerator_count: int = 0
    container_uri: str | None = None

    def pool_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"machine_type": self.machine_type}
        if self.accelerator_type and self.accelerator_count:
            spec["accelerator_type"] = self.accelerator_type
            spec["accelerator_count"] = self.accelerator_count
        return spec


_WARNED: set[tuple[int, int]] = set()  # TensorFlow versions already warned about


def default_container_uri(region: str, gpu: bool, tf_version: str | None = None) -> str:
    """The prebuilt Vertex TensorFlow training image for the installed TF major.minor.

    Rule: {us|europe|asia}-docker.pkg.dev/vertex-ai/training/tf-{cpu|gpu}.{MAJOR}-{MINOR}.py310
    :latest, the repository nearest the region, tf-gpu when an accelerator is asked for. A local
    TensorFlow newer than the newest prebuilt image gets that newest image, with a warning.
    """
    if tf_version is None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            tf_version = version("tensorflow")
        except PackageNotFoundError:
            tf_version = "{}.{}".format(*NEWEST_TF_IMAGE)
    major, minor = (int(part) for part in tf_version.split(".")[:2])
    if (major, minor) > NEWEST_TF_IMAGE:
        if (major, minor) not in _WARNED:  # once per process, not once per job
            _WARNED.add((major, minor))
            log.warning(
                "no prebuilt Vertex training image for TensorFlow %s.%s yet; trials use %s.%s "
                "(pass --container-uri to choose another prebuilt image)",
                major,
                minor,
                *NEWEST_TF_IMAGE,
            )
        major, minor = NEWEST_TF_IMAGE
    repository = {"europe": "europe", "asia": "asia"}.get(region.split("-")[0], "us")
    kind = "gpu" if gpu else "cpu"
    return f"{repository}-docker.pkg.dev/vertex-ai/training/tf-{kind}.{major}-{minor}.py310:latest"


def is_prebuilt(container_uri: str) -> bool:
    return (
        "docker.pkg.dev/vertex-ai/" in container_uri or "gcr.io/cloud-aiplatform/" in container_uri
    )


SCRIPT_REPEAT = (
    "trust.executions_per_trial: on vertex a trial runs several times through a module "
    "trainer only (a script trainer ships through from_local_script, which cannot carry the "
    "wrapper); use trainer.module, or executions_per_trial: 1"
)


def check_trainer(trainer: Any, source: str, executions: int = 1) -> None:
    """A UserError now, before anything is submitted, when the trainer cannot be packaged."""
    if trainer.script and executions > 1:
        raise UserError(f"{source}: {SCRIPT_REPEAT}")
    if trainer.script:
        if not Path(trainer.script).is_file():
            raise UserError(
                f"{source}: trainer.script: {trainer.script} does not exist; fix the path "
                f"(relative to the space file) or use --trainer"
            )
        return
    package_root(trainer.module)


def package_root(module: str) -> Path:
    """The directory (or single .py file) of `module`'s top-level package, found like `python -m`
    from the current directory would find it."""
    top = module.split(".")[0]
    spec = importlib.machinery.PathFinder.find_spec(top, [os.getcwd(), *sys.path])
    if spec is None:
        raise UserError(
            f"trainer.module: cannot find the package {top!r} of {module} from {os.getcwd()}; "
            f"run dualtune from the directory that holds {top}/, or use a trainer script"
        )
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    if spec.origin and spec.origin.endswith(".py"):
        return Path(spec.origin)
    raise UserError(f"trainer.module: {top!r} is not a Python source package; it cannot ship")


def build_sdist(module: str, workdir: Path, with_trialkit: bool = False) -> Path:
    """An sdist of the trainer's top-level package whose install_requires holds
    cloudml-hypertune and the lines of <package>/requirements.txt, if that file exists.
    `with_trialkit`: trialkit ships beside it (its trialkit.repeat runs a trial N times)."""
    root = package_root(module)
    tree = workdir / "src"
    tree.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    extra = [TRIALKIT] if with_trialkit and root.name != TRIALKIT.name else []
    for package in extra:
        shutil.copytree(package, tree / package.name, ignore=ignore)
    if root.is_dir():
        shutil.copytree(root, tree / root.name, ignore=ignore)
        names = [n for p in (root, *extra) for n in (p.name, p.name + ".*")]
        layout = f"packages=find_packages(include={names!r})"
        grafts = "".join(f"graft {p.name}\n" for p in (root, *extra))
        (tree / "MANIFEST.in").write_text(f"{grafts}global-exclude *.py[cod]\n")
    elif extra:
        shutil.copy2(root, tree / root.name)
        layout = f"py_modules=[{root.stem!r}], packages=find_packages(include=['trialkit'])"
        (tree / "MANIFEST.in").write_text("graft trialkit\nglobal-exclude *.py[cod]\n")
    else:
        shutil.copy2(root, tree / root.name)
        layout = f"py_modules=[{root.stem!r}]"
    requires = [HYPERTUNE, *_requirements(root)]
    (tree / "setup.py").write_text(
        "from setuptools import find_packages, setup\n"
        f"setup(name={PACKAGE_NAME!r}, version='0.1', {layout},\n"
        f"      include_package_data=True, install_requires={requires!r})\n"
    )
    dist = workdir / "dist"
    done = subprocess.run(
        [sys.executable, "setup.py", "-q", "sdist", "--formats=gztar", "--dist-dir", str(dist)],
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    archives = sorted(dist.glob("*.tar.gz"))
    if done.returncode != 0 or not archives:
        tail = (done.stderr or done.stdout).strip()[-500:]
        raise BackendError(f"could not build the trainer package of {module}: {tail}")
    return archives[0]


def _requirements(root: Path) -> list[str]:
    path = (root if root.is_dir() else root.parent) / "requirements.txt"
    if not path.is_file():
        return []
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and line != HYPERTUNE]


def upload(local: Path, uri: str, project: str, credentials: Any) -> None:
    """Copy one file to gs:// (to the session's storage endpoint: see session.py)."""
    from google.cloud import storage
    from google.cloud.storage.retry import DEFAULT_RETRY

    bucket, _, name = uri[len("gs://") :].partition("/")
    client = storage.Client(project=project, credentials=credentials)
    # The same bytes under the same name: a retried upload is harmless.
    client.bucket(bucket).blob(name).upload_from_filename(str(local), retry=DEFAULT_RETRY)


def read_text(uri: str, storage: Any) -> str | None:
    """A gs:// object's text through `storage` (a google-cloud-storage client), None when it
    does not exist."""
    from google.api_core import exceptions

    bucket, _, name = uri[len("gs://") :].partition("/")
    try:
        return storage.bucket(bucket).blob(name).download_as_text()
    except exceptions.NotFound:
        return None


@dataclass(frozen=True)
class JobSpec:
    """What one CustomJob (a trial template or the finalize run) runs."""

    display_name: str
    args: tuple[str, ...]
    env: dict[str, str]
    base_output_dir: str  # gs://...
    # executions_per_trial > 1: trialkit.repeat's own args (trialkit.repeat.wrapper_args); the
    # job then runs that wrapper, which runs the trainer N times (module trainers only)
    repeat: tuple[str, ...] = ()


def custom_job(
    trainer: Any,
    spec: JobSpec,
    machine: Machine,
    container_uri: str,
    staging_bucket: str,
    project: str,
    credentials: Any,
) -> Any:
    """An aiplatform.CustomJob (not yet created) that runs the trainer with `spec.args`."""
    from google.cloud import aiplatform

    if trainer.script:
        if spec.repeat:  # check_trainer refuses it first; this keeps the wrapper from being lost
            raise UserError(SCRIPT_REPEAT)
        return aiplatform.CustomJob.from_local_script(
            display_name=spec.display_name,
            script_path=str(trainer.script),
            container_uri=container_uri,
            args=list(spec.args),
            requirements=[HYPERTUNE],
            environment_variables=dict(spec.env) or None,
            machine_type=machine.machine_type,
            accelerator_type=machine.accelerator_type or "ACCELERATOR_TYPE_UNSPECIFIED",
            accelerator_count=machine.accelerator_count,
            base_output_dir=spec.base_output_dir,
            staging_bucket=staging_bucket,
            credentials=credentials,  # its package upload does not use aiplatform.init's
        )
    repeat = bool(spec.repeat)
    package_uri = _stage_package(trainer.module, staging_bucket, project, credentials, repeat)
    module, args = trainer.module, list(spec.args)
    if repeat:  # the wrapper first; Vertex appends the trial's flags after the trainer's args
        module, args = REPEAT_MODULE, [*spec.repeat, "--", *args]
    pool = {
        "machine_spec": machine.pool_spec(),
        "replica_count": 1,
        "python_package_spec": {
            "executor_image_uri": container_uri,
            "package_uris": [package_uri],
            "python_module": module,
            "args": args,
            "env": [{"name": k, "value": v} for k, v in spec.env.items()],
        },
    }
    return aiplatform.CustomJob(
        display_name=spec.display_name,
        worker_pool_specs=[pool],
        base_output_dir=spec.base_output_dir,
        staging_bucket=staging_bucket,
    )


def _stage_package(
    module: str, staging_bucket: str, project: str, credentials: Any, with_trialkit: bool = False
) -> str:
    with tempfile.TemporaryDirectory(prefix="dualtune-package-") as tmp:
        archive = build_sdist(module, Path(tmp), with_trialkit)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        uri = f"{staging_bucket.rstrip('/')}/dualtune-packages/{stamp}-{archive.name}"
        upload(archive, uri, project, credentials)
    log.info("trainer package %s uploaded to %s", module, uri)
    return uri
