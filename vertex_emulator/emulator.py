"""Starting and stopping the emulator: the Vertex REST server thread plus the storage subprocess."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from vertex_emulator.faults import ENV_VAR, Faults, parse_faults
from vertex_emulator.storage import StorageEmulator, gs_to_local

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
    _stopped: threading.Event = field(default_factory=threading.Event, repr=False)
    _stop_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def env(self) -> dict[str, str]:
        """Environment a client process needs (google-cloud-storage reads STORAGE_EMULATOR_HOST)."""
        return {"STORAGE_EMULATOR_HOST": self.storage_url, "GOOGLE_CLOUD_PROJECT": self.project}

    def init_kwargs(self) -> dict:
        """Keyword arguments for aiplatform.init() that point the real SDK here."""
        from google.auth.credentials import AnonymousCredentials

        return {
            "project": self.project,
            "location": self.location,
            "api_endpoint": self.url,
            "api_transport": "rest",
            "credentials": AnonymousCredentials(),
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
        """Stop every job (its processes too), the HTTP server and the storage emulator."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            self._server.shutdown()
            self._server.server_close()
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
    storage_port: int = 0,
    grace_s: float = 5.0,
    poll_s: float = 0.1,
    seed: int = 0,
    bayesian: str = "auto",
) -> Emulator:
    """Start the emulator on 127.0.0.1 (port 0: any free port) with `bucket` created.

    `workdir` holds packages, trial directories and the local stand-ins of gs:// paths; a
    temporary one (removed by stop()) when None. `python` runs the trials. `bayesian` picks
    ALGORITHM_UNSPECIFIED's designer: "vizier" (Open Source Vizier's GP-UCB-PE, needs the vizier
    extra), "keras_tuner" (Keras Tuner's GP), "auto" (Vizier's when installed).
    """
    from vertex_emulator.jobs import Jobs
    from vertex_emulator.routes import VertexApi
    from vertex_emulator.runner import Runtime
    from vertex_emulator.server import VertexHttpServer
    from vertex_emulator.store import Store
    from vertex_emulator.suggest import bayesian_designer, resolve_bayesian

    designer = bayesian_designer(bayesian)  # refuses "vizier" without the extra, before starting
    bayesian = resolve_bayesian(bayesian)  # every job uses the designer just stated

    owns = workdir is None
    root = Path(tempfile.mkdtemp(prefix="dualtune-emulator-") if owns else workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    storage = StorageEmulator.start(bucket, root / "storage.log", port=storage_port)
    try:
        rt = Runtime(root, python, storage, project, location, grace_s, poll_s, seed, bayesian)
        jobs, faults = Jobs(), Faults()
        api = VertexApi(rt, Store(), jobs, {})
        server = VertexHttpServer(("127.0.0.1", port), api, faults)
    except BaseException:
        storage.stop()
        raise
    url = f"http://127.0.0.1:{server.server_address[1]}"
    emulator = Emulator(
        url, storage.url, project, location, f"gs://{bucket}", root, server, jobs, storage, faults
    )
    emulator._owns_workdir = owns
    emulator.bayesian_designer = designer
    api.info.update(
        url=url,
        storageUrl=storage.url,
        project=project,
        location=location,
        bucket=emulator.bucket,
        workdir=str(root),
        bayesianDesigner=designer,
    )
    threading.Thread(target=server.serve_forever, name="vertex-emulator", daemon=True).start()
    log.info("Vertex emulator on %s, storage on %s, workdir %s", url, storage.url, root)
    return emulator


def run_cli(port: int, workdir: Path | None) -> int:
    """`dualtune emulator`: start, print how to point a client here, block until Ctrl-C."""
    emulator = start(port=port, workdir=workdir)
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
  workdir  {emulator.workdir}   (gs://B/path is kept in <workdir>/gcs/B/path)
  Bayesian (ALGORITHM_UNSPECIFIED) suggestions: {emulator.bayesian_designer}
Environment for clients:
{env}
dualtune:  --emulator {emulator.url}   (details: GET {emulator.url}/dualtune-emulator/info)
aiplatform.init(project="{emulator.project}", location="{emulator.location}",
                api_endpoint="{emulator.url}", api_transport="rest",
                credentials=AnonymousCredentials(), staging_bucket="{emulator.bucket}")
Ctrl-C to stop."""
