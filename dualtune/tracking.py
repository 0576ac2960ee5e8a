"""Where MLflow records live: the tracking URI, checked before anything is written, and a
client to write or read them (what they hold and how to find it: mlflow_layout.py).

Default: a SQLite store with its artifacts, both inside ./mlruns. MLFLOW_TRACKING_URI or
--tracking-uri selects any other store or a remote `mlflow server`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from trialkit.errors import UserError

SCHEMES = ("sqlite", "http", "https", "file", "postgresql", "mysql", "mssql", "databricks")
SERVER_TIMEOUT_S = 10.0  # for the one request that checks a tracking server answers


def default_store(cwd: Path | None = None) -> tuple[str, str]:
    root = (cwd or Path.cwd()) / "mlruns"
    return f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri()


def resolve_tracking_uri(flag: str | None, recorded: str | None = None) -> tuple[str, str | None]:
    """(tracking URI, artifact location for new experiments or None for the store's default).
    The flag wins, then MLFLOW_TRACKING_URI, then `recorded` (the store a study's record
    names), then the default store."""
    if not flag and not os.environ.get("MLFLOW_TRACKING_URI") and recorded:
        check_tracking_uri(recorded, "the study record's tracking_uri (--tracking-uri to override)")
        return recorded, _artifacts_beside(recorded)
    uri = flag or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        uri, artifacts = default_store()
        root = Path(urlparse(uri).path).parent
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"{root}: cannot hold the default MLflow store ({exc.strerror}); move what is "
                f"there or give --tracking-uri sqlite:///ABSOLUTE/PATH/mlflow.db"
            ) from None
        _check_sqlite(uri, "the default MLflow store (./mlruns)")
        return uri, artifacts
    uri = _absolute_sqlite(uri)
    check_tracking_uri(uri, "--tracking-uri" if flag else "MLFLOW_TRACKING_URI")
    return uri, _artifacts_beside(uri)


def _absolute_sqlite(uri: str) -> str:
    """sqlite:///relative/path.db (relative to the current directory, as MLflow reads it) as
    sqlite:////absolute/path.db: what a study records must name the same store from anywhere."""
    prefix = "sqlite:///"
    path = uri[len(prefix) :]
    if not uri.startswith(prefix) or path.startswith("/") or path.startswith(":memory:"):
        return uri
    return prefix + str(Path(path).resolve())


def _artifacts_beside(uri: str) -> str | None:
    """A SQLite store's artifact folder, beside its database; None: the store's own default."""
    path = uri[len("sqlite:///") :]
    if uri.startswith("sqlite:///") and path.startswith("/"):  # :memory: has no folder
        return (Path(path).parent / "artifacts").as_uri()
    return None


def public_uri(uri: str) -> str:
    """`uri` without the user:password@ it may carry, for records (study.json) and messages."""
    parts = urlparse(uri)
    if "@" not in parts.netloc:
        return uri
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def check_tracking_uri(uri: str, source: str) -> None:
    """Refuse, before anything is created, a URI MLflow would fail on halfway through a study."""
    scheme = urlparse(uri).scheme
    if scheme not in SCHEMES and not (scheme == "" and uri.startswith("/")):
        raise UserError(
            f"{source}: unsupported tracking URI {public_uri(uri)!r}; use e.g. "
            f"http://127.0.0.1:5000 or sqlite:///ABSOLUTE/PATH/mlflow.db"
        )
    if scheme in ("http", "https"):
        _check_server(uri, source)
    elif scheme == "sqlite":
        _check_sqlite(uri, source)
    elif scheme in ("", "file") and not _file_store_allowed():
        raise UserError(
            f"{source}: {uri!r} is an MLflow file store, which MLflow 3 refuses; use "
            f"sqlite:///ABSOLUTE/PATH/mlflow.db (or set MLFLOW_ALLOW_FILE_STORE=true)"
        )


def _check_server(uri: str, source: str) -> None:
    """An http(s) store must answer now: MLflow's client would retry for minutes mid-study.
    Credentials in the URI (user:password@) are sent as basic auth and never printed."""
    import base64
    import urllib.error
    import urllib.request

    parts, public = urlparse(uri), public_uri(uri)
    if not parts.hostname:
        raise UserError(f"{source}: {public!r} has no host; use e.g. http://127.0.0.1:5000")
    request = urllib.request.Request(public.rstrip("/") + "/health")
    if parts.username is not None:
        pair = f"{parts.username}:{parts.password or ''}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(pair).decode())
    try:
        with urllib.request.urlopen(request, timeout=SERVER_TIMEOUT_S):
            return
    except urllib.error.HTTPError:
        return  # it answered: authentication and the API are MLflow's to judge
    except (urllib.error.URLError, OSError, ValueError) as exc:
        why = getattr(exc, "reason", exc)
        raise UserError(
            f"{source}: no MLflow server answers at {public} ({why}); start one "
            f"(`mlflow server`) or check the URL"
        ) from None


def _check_sqlite(uri: str, source: str) -> None:
    db = Path(uri[len("sqlite:///") :])
    if not uri.startswith("sqlite:///") or not db.parent.is_dir():
        raise UserError(
            f"{source}: {uri!r}: the database's folder does not exist; "
            f"create it or use sqlite:///ABSOLUTE/PATH/mlflow.db"
        )
    if db.is_dir():
        raise UserError(f"{source}: {uri!r} names a directory; use sqlite:///{db / 'mlflow.db'}")
    if db.is_file() and db.stat().st_size and not _is_sqlite(db):
        raise UserError(
            f"{source}: {db} is not a SQLite database; use a new file name such as "
            f"sqlite:///{db.parent / 'mlflow.db'}"
        )


def check_store_writable(uri: str, source: str = "--tracking-uri") -> None:
    """Refuse, before anything is created, a SQLite store this process cannot write (a
    read-only filesystem or folder): MLflow would retry every write for minutes mid-study.
    SQLite writes its journal beside the database, so the folder must be writable too."""
    if not uri.startswith("sqlite:///"):
        return  # a server or database judges its own permissions
    db = Path(uri[len("sqlite:///") :])
    for path in (db.parent, db):
        if path.exists() and not os.access(path, os.W_OK):
            raise UserError(
                f"{source}: the MLflow store {db} cannot be written ({path} is read-only); "
                f"make it writable or give --tracking-uri sqlite:///WRITABLE/PATH/mlflow.db"
            )


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _file_store_allowed() -> bool:
    return os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").strip().lower() in ("true", "1")


def prepare_store(uri: str) -> None:
    """Create and migrate a SQLite store once, whoever comes first: MLflow creates its tables
    and runs its schema migrations the first time a process opens a store, and two studies
    started together on a store that does not exist yet race there (`table _alembic_tmp_tags
    already exists`), which can leave the store broken for good. An exclusive lock on a file
    beside the database serialises that first open; every later open finds the schema
    current and migrates nothing. Other stores migrate under their own server's control."""
    if not uri.startswith("sqlite:///"):
        return
    import fcntl

    db = Path(uri[len("sqlite:///") :])
    with open(db.with_name(f".{db.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            client(uri).search_experiments(max_results=1)  # creates or migrates, under the lock
        except Exception as exc:  # noqa: BLE001 - whatever MLflow or SQLite says, in one line
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise UserError(
                f"--tracking-uri: the MLflow store {db} cannot be opened ({first}); move it "
                f"aside and start again, or give --tracking-uri sqlite:///OTHER/PATH/mlflow.db"
            ) from None
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def store_client(tracking_uri: str | None, source: str, study: str) -> tuple[str, Any]:
    """(URI, client) for reading; refuses a SQLite store that does not exist yet, since
    asking it would create an empty one. `source` and `study` name what was asked for."""
    uri, _ = resolve_tracking_uri(tracking_uri)
    db = Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None
    if db is not None and not db.exists():
        raise UserError(
            f"{source}: no MLflow store at {db} yet, so no study {study!r}; run `dualtune tune` "
            f"first or check --tracking-uri"
        )
    return uri, client(uri)
