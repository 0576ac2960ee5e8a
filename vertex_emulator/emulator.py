"""Starting and stopping the emulator: the Vertex REST server thread plus the storage subprocess."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from vertex_emulator.errors import PortTaken
from vertex_emulator.faults import ENV_VAR, Faults, parse_faults
from vertex_emulator.storage import StorageEmulator, gs_to_local
from vertex_emulator.token import workdir_token

STATE_FILE = "emulator.json"  # what a restart on the same workdir reuses (the storage port)

log = logging.getLogger(__name__)


@dataclass
class Emulator:
    """A running emulator. Stop it with stop() or use it as a context manager."""

    url: str
    storage_url: str
    project: str
    location: str
    bucket: str  # gs://name
    workdir: Path
    _server: object = field(repr=False)
    _jobs: object = field(repr=False)
    _storage: StorageEmulator = field(repr=False)
    _faults: Faults = field(repr=False)
    _owns_workdir: bool = field(default=False, repr=False)
    bayesian_designer: str = ""  # which designer serves ALGORITHM_UNSPECIFIED, in words
    token_file: Path | None = None  # its bearer token (0600); clients send it
    _halting: threading.Event = field(default_factory=threading.Event, repr=False)
    _stopped: threading.Event = field(default_factory=threading.Event, repr=False)
    _stop_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    def env(self) -> dict[str, str]:
        """Environment a client process needs (google-cloud-storage reads STORAGE_EMULATOR_HOST)."""
        return {"STORAGE_EMULATOR_HOST": self.storage_url, "GOOGLE_CLOUD_PROJECT": self.project}

    def headers(self) -> dict[str, str]:
        """The header every request to the emulator (and its storage) must carry."""
        return {"Authorization": f"Bearer {self.token}"}

    def credentials(self):
        """Credentials that send this emulator's token (the SDK and google-cloud-storage)."""
        from google.oauth2.credentials import Credentials

        return Credentials(token=self.token)

    def init_kwargs(self) -> dict:
        """Keyword arguments for aiplatform.init() that point the real SDK here."""
        return {
            "project": self.project,
            "location": self.location,
            "api_endpoint": self.url,
            "api_transport": "rest",
            "credentials": self.credentials(),
            "staging_bucket": self.bucket,
        }

    def gs_to_local(self, uri: str) -> Path:
        """The local directory that stands for gs://... (trials' AIP_* directories live there)."""
        return gs_to_local(uri, self.workdir)

    def inject_faults(
        self, status: int = 503, count: int = 1, pattern: str = "", method: str | None = None
    ) -> None:
        """The next `count` requests whose path matches `pattern` (and method) answer `status`."""
        self._faults.inject(status, count, pattern, method)

    def clear_faults(self) -> None:
        self._faults.clear()

    def serve_forever(self) -> None:
        """Block until stop() is called (from another thread or a signal handler)."""
        while not self._stopped.wait(timeout=1.0):
            pass

    def stop(self) -> None:
        """Stop the HTTP server, every job's processes and the storage emulator. With a
        workdir of its own (temporary) the jobs are cancelled; with one it was given, they keep
        their state and the next start on it carries them on."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            self._server.shutdown()
            self._server.server_close()
            if not self._owns_workdir:  # kept: the next start carries its jobs on
                self._halting.set()
            self._jobs.stop(timeout_s=30.0)
            self._storage.stop()
            if self._owns_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            self._stopped.set()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start(
    port: int = 0,
    workdir: Path | None = None,
    bucket: str = "dualtune-emulator",
    project: str = "dualtune-emulator",
    location: str = "us-central1",
    python: str = sys.executable,
    *,
    storage_port: int | None = None,
    grace_s: float = 5.0,
    poll_s: float = 0.1,
    seed: int = 0,
    bayesian: str = "auto",
) -> Emulator:
    """Start the emulator on 127.0.0.1 (port 0: any free port) with `bucket` created.

    `workdir` holds its jobs, packages, trial directories, the local stand-ins of gs:// paths,
    the Cloud Storage objects and its token; a temporary one (removed by stop()) when None.
    Started again on a workdir, it carries on the jobs left unfinished there (recovery.py),
    with the same token and, unless told otherwise, the same storage port. `python` runs the
    trials. `bayesian` picks ALGORITHM_UNSPECIFIED's designer: "vizier" (Open Source Vizier's
    GP-UCB-PE, needs the vizier extra), "keras_tuner" (Keras Tuner's GP), "auto" (Vizier's
    when installed). PortTaken (exit 2) when `port` or `storage_port` is in use.
    """
    from vertex_emulator.recovery import carry_on
    from vertex_emulator.runner import Runtime
    from vertex_emulator.suggest import bayesian_designer, resolve_bayesian

    designer = bayesian_designer(bayesian)  # refuses "vizier" without the extra, before starting
    bayesian = resolve_bayesian(bayesian)  # every job uses the designer just stated
    _check_free(port, "--port")
    owns = workdir is None
    root = Path(tempfile.mkdtemp(prefix="dualtune-emulator-") if owns else workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    _, token_file = workdir_token(root)
    storage = _start_storage(root, bucket, token_file, storage_port)
    try:
        rt = Runtime(root, python, storage, project, location, grace_s, poll_s, seed, bayesian)
        server, api, jobs, faults = _serve(rt, port)
    except BaseException:
        storage.stop()
        raise
    url = f"http://127.0.0.1:{server.server_address[1]}"
    emulator = Emulator(
        url, storage.url, project, location, f"gs://{bucket}", root, server, jobs, storage, faults
    )
    emulator._owns_workdir = owns
    emulator._halting = rt.halting
    emulator.bayesian_designer = designer
    emulator.token_file = token_file
    api.info.update(
        url=url,
        storageUrl=storage.url,
        project=project,
        location=location,
        bucket=emulator.bucket,
        workdir=str(root),
        tokenFile=str(token_file),
        bayesianDesigner=designer,
    )
    _remember(root, {"storagePort": int(storage.url.rsplit(":", 1)[1])})
    threading.Thread(target=server.serve_forever, name="vertex-emulator", daemon=True).start()
    carry_on(api)
    log.info("Vertex emulator on %s, storage on %s, workdir %s", url, storage.url, root)
    return emulator


def _serve(rt, port: int):
    """The API, its store (read back from the workdir) and the HTTP server, not yet serving."""
    from vertex_emulator.jobs import Jobs
    from vertex_emulator.routes import VertexApi, resource_classes
    from vertex_emulator.server import VertexHttpServer
    from vertex_emulator.store import Store

    jobs, faults = Jobs(), Faults()
    api = VertexApi(rt, Store(rt.workdir / "resources", resource_classes()), jobs, {})
    try:
        server = VertexHttpServer(("127.0.0.1", port), api, faults, rt.storage.token)
    except OSError as err:
        if port and err.errno == errno.EADDRINUSE:
            raise PortTaken(port, "--port") from None
        raise
    return server, api, jobs, faults


def _check_free(port: int, flag: str) -> None:
    """PortTaken now, before anything starts, when `port` cannot be listened on."""
    if not port:
        return
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise PortTaken(port, flag) from None


def _start_storage(root: Path, bucket: str, token_file: Path, port: int | None):
    """The storage server on `port`, else on the port this workdir used last if it is free
    (a client that recorded the storage endpoint finds it again), else on any free port."""
    if port is None:
        port = _recalled(root).get("storagePort", 0)
        try:
            _check_free(port, "--storage-port")
        except PortTaken:
            port = 0
    else:
        _check_free(port, "--storage-port")
    return StorageEmulator.start(
        bucket, root / "storage.log", root / "storage", token_file, port=port
    )


def _recalled(root: Path) -> dict:
    try:
        return json.loads((root / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _remember(root: Path, state: dict) -> None:
    (root / STATE_FILE).write_text(json.dumps(state))


def run_cli(port: int, workdir: Path | None, storage_port: int | None = None) -> int:
    """`dualtune emulator`: start, print how to point a client here, block until Ctrl-C."""
    emulator = start(port=port, workdir=workdir, storage_port=storage_port)
    for fault in parse_faults(os.environ.get(ENV_VAR, "")):
        emulator.inject_faults(**fault)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    print(_settings_text(emulator), flush=True)
    try:
        emulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        emulator.stop()
    return 0


def _settings_text(emulator: Emulator) -> str:
    env = "\n".join(f"  export {key}={value}" for key, value in emulator.env().items())
    return f"""Vertex AI emulator listening on {emulator.url}
  project  {emulator.project}
  region   {emulator.location}
  bucket   {emulator.bucket}   (Cloud Storage emulator at {emulator.storage_url})
  workdir  {emulator.workdir}   (gs://B/path is kept in <workdir>/gcs/B/path; start again
           with --workdir {emulator.workdir} to carry on its unfinished jobs)
  token    {emulator.token_file}   (send it as `Authorization: Bearer`; this user only)
  Bayesian (ALGORITHM_UNSPECIFIED) suggestions: {emulator.bayesian_designer}
Environment for clients:
{env}
dualtune:  --emulator {emulator.url}   (details: GET {emulator.url}/dualtune-emulator/info)
aiplatform.init(project="{emulator.project}", location="{emulator.location}",
                api_endpoint="{emulator.url}", api_transport="rest",
                credentials=google.oauth2.credentials.Credentials(
                    open("{emulator.token_file}").read().strip()),
                staging_bucket="{emulator.bucket}")
Ctrl-C to stop."""
