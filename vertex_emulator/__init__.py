"""A local Vertex AI emulator for dualtune's vertex backend and its tests.

It serves, on 127.0.0.1, the REST calls the real google-cloud-aiplatform SDK makes for
CustomJobs, HyperparameterTuningJobs and custom-task TrainingPipelines, and runs their replicas
as local processes; a gcp-storage-emulator subprocess stands in for Cloud Storage. Point the SDK
at it with aiplatform.init(**emulator.init_kwargs()) and emulator.env() in the environment.
It answers only loopback requests that carry its token (guard.py; emulator.headers(),
emulator.credentials()), and keeps its jobs in its workdir through a restart (recovery.py).

    with vertex_emulator.start(workdir=tmp) as emulator:
        ...

Suggestions for the default algorithm come from Keras Tuner's Gaussian-process Bayesian
optimisation, not from Vizier (see suggest.py); early stopping applies the median rule only.
Heavy imports (the aiplatform protos, Keras Tuner) happen when an emulator starts or a Bayesian
job runs, not on import.
"""

from __future__ import annotations

from vertex_emulator.emulator import Emulator, run_cli, start
from vertex_emulator.storage import gs_to_local

__all__ = ["Emulator", "gs_to_local", "run_cli", "start"]
