"""dualtune's exceptions, for users of the Python API (`from dualtune.errors import UserError`).

They are defined in trialkit/errors.py, the bottom layer, so every layer can raise them
without importing upward (see the README's architecture section).
"""

from __future__ import annotations

from trialkit.errors import BackendError, DualtuneError, SpaceError, UserError

__all__ = ["BackendError", "DualtuneError", "SpaceError", "UserError"]
