"""Rule 7 of the hostile-input issue: running out of a resource (memory, disk) is one line saying what to change."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest
from helpers import one_error_line


@pytest.mark.slow
def test_the_cpu_allocators_failure_is_one_line():
    """M8: torch raises the CPU allocator's failure as a plain RuntimeError, not its OutOfMemoryError."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # a 4 GiB address space

    argv = [
        "bench",
        "resnet18",
        "--img-size",
        "2048",
        "--batch-size",
        "64",  # large enough that an early allocation fails: no minutes of convolution first
        "--steps",
        "1",
        "--warmup",
        "0",
        "--mode",
        "inference",
    ]
    res = subprocess.run(
        [sys.executable, "-m", "zoo", *argv], capture_output=True, text=True, timeout=300, preexec_fn=limit
    )
    assert res.returncode == 2, res.stderr[-2000:]
    err = one_error_line(res.stderr)
    assert "allocate" in err and "--batch-size" in err
