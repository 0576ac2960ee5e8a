"""The Cloud Storage side: the storage server subprocess (storage_server.py) and the calls
jobs need.

Objects live on disk in <workdir>/storage/ and survive a restart of the emulator.
Trials never talk to gs:// directly for their outputs: TensorFlow's gs:// filesystem ignores
STORAGE_EMULATOR_HOST, so the AIP_* directories are local paths (gs_to_local), and a job's
outputs are copied up to the storage emulator when it ends, where a client expects them.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

from trialkit.gcs import fuse_path, split_gs
from vertex_emulator.errors import EmulatorError, PortTaken
from vertex_emulator.storage_server import PORT_TAKEN_EXIT

log = logging.getLogger(__name__)

START_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 30.0


# A bucket name (Cloud Storage: [a-z0-9-_.], starting and ending with a letter or digit).
_BUCKET = re.compile(r"^[a-z0-9]([-_.a-z0-9]{0,220}[a-z0-9])?$")


def gs_to_local(uri: str, root: Path) -> Path:
    """Where the emulator keeps gs://bucket/path on disk: <root>/gcs/bucket/path, the layout
    of Vertex's own Cloud Storage FUSE mount (trialkit/gcs.py). ValueError for a bucket that is
    no bucket name (`..`) or a path that would leave <root>/gcs."""
    bucket, _ = split_gs(uri)
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise ValueError(f"{bucket!r} in {uri!r} is not a Cloud Storage bucket name")
    path = fuse_path(uri, root)
    top = (Path(root) / "gcs").resolve()
    if not path.resolve().is_relative_to(top):
        raise ValueError(f"{uri!r} resolves outside the emulator's storage folder")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class StorageEmulator:
    """A running Cloud Storage stand-in (storage_server.py: gcp-storage-emulator on disk,
    behind the guard) and plain-HTTP helpers against it, which send the emulator's token."""

    def __init__(self, url: str, process: subprocess.Popen | None, token: str = "") -> None:
        self.url = url
        self.process = process
        self.token = token

    @classmethod
    def start(
        cls,
        bucket: str,
        log_path: Path,
        data_dir: Path,
        token_file: Path,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> StorageEmulator:
        """Start it with `bucket` created; retry on another port if a free one was taken
        meanwhile. EmulatorError when it does not start (`port` taken: say so)."""
        last = ""
        token = token_file.read_text().strip()
        for _ in range(3):
            chosen = port or free_port(host)
            config = {"host": host, "port": chosen, "dataDir": str(data_dir)}
            config.update(bucket=bucket, tokenFile=str(token_file))
            argv = [sys.executable, "-m", "vertex_emulator.storage_server", json.dumps(config)]
            with open(log_path, "ab") as out:
                # stdin: a pipe this process holds, so the server ends when this process does.
                proc = subprocess.Popen(
                    argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT
                )
            emulator = cls(f"http://{host}:{chosen}", proc, token)
            if emulator._wait_ready():
                try:
                    emulator.create_bucket(bucket)  # the server made it: check it did
                except EmulatorError:
                    emulator.stop()
                    raise
                return emulator
            emulator.stop()
            last = log_path.read_text(errors="replace")[-2000:]
            if port:
                if proc.returncode == PORT_TAKEN_EXIT:
                    raise PortTaken(port, "--storage-port")
                break
        raise EmulatorError(f"the storage emulator did not start: {last.strip()}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if self._answers():
                return True
            try:
                self.process.wait(timeout=0.05)  # wakes early if it dies
            except subprocess.TimeoutExpired:
                pass
        return False

    def _request(self, url: str, method: str = "GET", data: bytes | None = None):
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        return request

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self._request(f"{self.url}/"), timeout=2):  # health
                return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def _bucket_exists(self, bucket: str) -> bool:
        try:
            url = f"{self.url}/storage/v1/b/{bucket}"
            with urllib.request.urlopen(self._request(url), timeout=2):
                return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def create_bucket(self, bucket: str) -> None:
        if self._bucket_exists(bucket):
            return
        body = json.dumps({"name": bucket}).encode()
        self._call("POST", f"{self.url}/storage/v1/b?project=emulator", body, "application/json")

    def download(self, uri: str, dest: Path) -> Path:
        bucket, name = split_gs(uri)
        url = f"{self.url}/download/storage/v1/b/{bucket}/o/{quote(name, safe='')}?alt=media"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(self._call("GET", url))
        return dest

    def list_names(self, uri_prefix: str) -> list[str]:
        """The object names under gs://bucket/prefix (every page)."""
        bucket, prefix = split_gs(uri_prefix)
        names: list[str] = []
        token = ""
        for _ in range(10_000):  # bounded: a page holds many objects
            url = f"{self.url}/storage/v1/b/{bucket}/o?prefix={quote(prefix, safe='')}"
            answer = json.loads(self._call("GET", url + (f"&pageToken={token}" if token else "")))
            names += [item["name"] for item in answer.get("items", [])]
            token = answer.get("nextPageToken", "")
            if not token:
                break
        return names

    def download_tree(self, uri_prefix: str, dest: Path) -> int:
        """Copy every object under uri_prefix/ to dest/<relative name>; returns the count."""
        bucket, prefix = split_gs(uri_prefix)
        prefix = prefix.rstrip("/") + "/"
        count = 0
        for name in self.list_names(f"gs://{bucket}/{prefix}"):
            relative = name[len(prefix) :]
            if relative and not relative.endswith("/") and ".." not in relative.split("/"):
                self.download(f"gs://{bucket}/{name}", dest / relative)
                count += 1
        return count

    def upload_file(self, path: Path, uri: str) -> None:
        bucket, name = split_gs(uri)
        url = f"{self.url}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={quote(name)}"
        self._call("POST", url, Path(path).read_bytes(), "application/octet-stream")

    def upload_tree(self, root: Path, uri_prefix: str) -> int:
        """Copy every file under `root` to uri_prefix/<relative path>; returns the count."""
        count = 0
        if not root.is_dir():
            return 0
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            self.upload_file(path, f"{uri_prefix.rstrip('/')}/{path.relative_to(root).as_posix()}")
            count += 1
        return count

    def _call(self, method: str, url: str, data: bytes | None = None, ctype: str = "") -> bytes:
        request = self._request(url, method, data)
        if ctype:
            request.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as answer:
                return answer.read()
        except urllib.error.HTTPError as err:
            raise EmulatorError(f"storage emulator: {method} {url} -> {err.code}") from err

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
