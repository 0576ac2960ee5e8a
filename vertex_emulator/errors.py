"""The emulator's errors; ApiError carries the HTTP status and google.rpc code it answers."""

from __future__ import annotations

from trialkit.errors import DualtuneError

# HTTP status -> the google.rpc.Code name Google APIs put in error.status.
RPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class EmulatorError(DualtuneError):
    """The emulator could not start or serve (a subprocess died, a port was taken...)."""

    exit_code = 1


class ApiError(EmulatorError):
    """A request the emulator refuses, answered as {"error": {code, message, status}}."""

    def __init__(self, http_status: int, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
        self.status = status or RPC_STATUS.get(http_status, "UNKNOWN")

    def body(self) -> dict:
        return {"error": {"code": self.http_status, "message": self.message, "status": self.status}}


def invalid(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(name: str) -> ApiError:
    return ApiError(404, f"{name} not found.")


class PortTaken(EmulatorError):
    """A port the emulator was told to listen on is in use: one line, exit 2."""

    exit_code = 2

    def __init__(self, port: int, flag: str) -> None:
        super().__init__(
            f"{flag}: port {port} on 127.0.0.1 is in use (another emulator?); stop what "
            f"listens there or give another {flag}, e.g. {flag} {port + 1}"
        )
