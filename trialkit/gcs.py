"""gs:// paths and their local mirror.

Vertex AI mounts Cloud Storage in every job at /gcs/BUCKET/PATH (Cloud Storage FUSE); a local
stand-in (the emulator) keeps the same layout under its own root, <root>/gcs/BUCKET/PATH, so the
backend can read a job's outputs from disk when it is told that root.
"""

from __future__ import annotations

from pathlib import Path


def split_gs(uri: str) -> tuple[str, str]:
    """gs://bucket/some/name -> ("bucket", "some/name")."""
    if not uri.startswith("gs://"):
        raise ValueError(f"not a gs:// URI: {uri!r}")
    bucket, _, name = uri[len("gs://") :].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {uri!r}")
    return bucket, name


def fuse_path(uri: str, root: Path) -> Path:
    """gs://bucket/path as the FUSE layout under `root`: <root>/gcs/bucket/path."""
    bucket, name = split_gs(uri)
    parts = [p for p in name.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(f"refusing a relative path component in {uri!r}")
    return Path(root, "gcs", bucket, *parts)
