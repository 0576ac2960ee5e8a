"""Where MLflow records live: the tracking URI, and the study's runs read back from it.

Default: a SQLite store with its artifacts, both inside ./mlruns. MLFLOW_TRACKING_URI or
--tracking-uri selects any other store or a remote `mlflow server`.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from dualtune.errors import UserError

SCHEMES = ("sqlite", "http", "https", "file", "postgresql", "mysql", "mssql", "databricks")
TAG = "dualtune."  # prefix of dualtune's own tags


def default_store(cwd: Path | None = None) -> tuple[str, str]:
    root = (cwd or Path.cwd()) / "mlruns"
    return f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri()


def resolve_tracking_uri(flag: str | None) -> tuple[str, str | None]:
    """(tracking URI, artifact location for new experiments or None for the store's default)."""
    uri = flag or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        uri, artifacts = default_store()
        Path(urlparse(uri).path).parent.mkdir(parents=True, exist_ok=True)
        return uri, artifacts
    check_tracking_uri(uri, "--tracking-uri" if flag else "MLFLOW_TRACKING_URI")
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        return uri, (db.parent / "artifacts").as_uri()
    return uri, None


def check_tracking_uri(uri: str, source: str) -> None:
    scheme = urlparse(uri).scheme
    if scheme not in SCHEMES and not (scheme == "" and uri.startswith("/")):
        raise UserError(
            f"{source}: unsupported tracking URI {uri!r}; use e.g. http://127.0.0.1:5000, "
            f"sqlite:///path/mlflow.db or a directory path"
        )
    if scheme in ("http", "https") and not urlparse(uri).hostname:
        raise UserError(f"{source}: {uri!r} has no host; use e.g. http://127.0.0.1:5000")
    if scheme == "sqlite":
        db = Path(uri[len("sqlite:///") :])
        if not uri.startswith("sqlite:///") or not db.parent.is_dir():
            raise UserError(
                f"{source}: {uri!r}: the database's folder does not exist; "
                f"create it or use sqlite:///ABSOLUTE/PATH/mlflow.db"
            )


def client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)
