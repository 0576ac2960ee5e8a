"""TensorFlow's (and absl's) native start-up lines: what neither a terminal nor a failure reason
should show, because every TensorFlow process prints them whatever went wrong.

They are written by C++ straight to file descriptor 2, before Python's logging or warnings see
them, and TF_CPP_MIN_LOG_LEVEL does not silence them all (TensorFlow 2.21), so they are
recognised by their text: absl's notice about logging before InitializeLog, and glog-style lines
("I0000 00:00:1796174011.14 4687 port.cc:153] oneDNN ...") at INFO or WARNING from any source,
or at ERROR from the CUDA probes a machine without a GPU fails (cuInit, cudart_stub).
"""

from __future__ import annotations

import re

# glog prefix: severity letter, MMDD, time, thread id, file:line]
_GLOG = re.compile(r"^\s*([IWEF])\d{4} [\d:.]+\s+\d+ ([\w.-]+):\d+\] ?(.*)$")
_ERROR_SOURCES = ("cuda_platform.cc", "cudart_stub.cc", "cuda_executor.cc", "cuda_diagnostics.cc")
_ERROR_TEXTS = ("cuinit", "cuda drivers", "unable to register cu", "cuda_dnn", "cufft", "cublas")
_PLAIN = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "To enable the following instructions:",
    "This TensorFlow binary is optimized to use available CPU instructions",
)


def is_startup_noise(line: str) -> bool:
    """Whether `line` is one of TensorFlow's native start-up lines (see the module docstring)."""
    text = line.strip()
    if not text:
        return False
    if text.startswith(_PLAIN):
        return True
    match = _GLOG.match(text)
    if match is None:
        return False
    severity, source, message = match.groups()
    if severity in "IW":
        return True
    lowered = message.lower()
    return severity == "E" and (source in _ERROR_SOURCES or any(t in lowered for t in _ERROR_TEXTS))


def meaningful_lines(text: str) -> list[str]:
    """The non-blank lines of `text` that are not start-up noise, in order."""
    return [ln for ln in text.splitlines() if ln.strip() and not is_startup_noise(ln)]
