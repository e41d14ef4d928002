"""Shared fixtures: the real-data root and a helper that runs the study command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_VARIABLE = "LESION_STUDY_DATA"

# Keep every Ray runtime the tests start, here and in subprocesses, on 127.0.0.1. On Linux,
# Ray 2.60 advertises the machine's network address even for a single-node runtime. This
# switch, meant for single-node Ray on Windows and macOS, makes it use the loopback address.
# Ray reads it at import time, so it is set before any test module imports Ray.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

# Ray's dashboard process, started even without the dashboard, sends HTTP requests to the cloud
# metadata address 169.254.169.254 and to metadata.google.internal to detect its cloud, and a
# `ray start` cluster also posts a usage notice. Those requests use `requests`, which reads these
# variables, so they end at a closed port on 127.0.0.1 instead of leaving the machine. gRPC reads
# only the lower-case names, so Ray's own connections are not affected.
os.environ["HTTP_PROXY"] = os.environ["HTTPS_PROXY"] = "http://127.0.0.1:9"
os.environ["NO_PROXY"] = "127.0.0.1,localhost,::1"
for name in ("http_proxy", "https_proxy", "no_proxy"):
    os.environ.pop(name, None)


@pytest.fixture
def real_data_root() -> Path:
    """The folder holding the public lesion datasets; skips the test when it is not set."""
    value = os.environ.get(DATA_VARIABLE)
    if not value:
        pytest.skip(f"{DATA_VARIABLE} is not set; point it at the folder holding kvasir_seg/, fuseg_train/, ...")
    root = Path(value)
    if not root.is_dir():
        pytest.skip(f"{DATA_VARIABLE}={value} is not a folder")
    return root


def run_study_command(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m study.run`` in a subprocess (its own Ray runtime, stopped on exit)."""
    return subprocess.run(
        [sys.executable, "-m", "study.run", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
