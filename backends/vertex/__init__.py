"""The Vertex AI backend: studies as HyperparameterTuningJobs, finalize as a CustomJob.

The local Vertex emulator is a separate package (vertex_emulator); this one only talks
to whatever endpoint it is given, through the real google-cloud-aiplatform SDK.
"""

from __future__ import annotations

from backends.vertex.backend import VertexBackend
from backends.vertex.calls import RetryPolicy
from backends.vertex.packaging import default_container_uri

__all__ = ["RetryPolicy", "VertexBackend", "default_container_uri"]
