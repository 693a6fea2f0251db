"""Shared fixtures: the real datasets beside the checkout and models that are costly to build."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# No test may send traffic beyond 127.0.0.1: huggingface_hub would otherwise report telemetry to the
# endpoint it saw at import. Set here, before any test imports it, and inherited by subprocesses.
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["DO_NOT_TRACK"] = "1"

# Under pytest-xdist (`make test` runs two workers on this project's 2-core machines) each worker and the
# processes it starts get one torch thread, so the two workers share the cores instead of fighting over them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
# CI and developers have the read-only real data at ../shared/data; a user's fresh clone does not.
SHARED_DATA = Path(os.environ.get("ZOO_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real MNIST/Fashion-MNIST folder, or skip the test when this machine has none."""
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set ZOO_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _session_caches(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The same for session- and module-wide fixtures (a finished run, a weights file), made before any test's
    own setting applies."""
    cache = tmp_path_factory.getbasetemp() / "caches"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE_DIR", str(cache / "zoo"))
        patch.setenv("HF_HOME", str(cache / "hf"))
        patch.setenv("TORCH_HOME", str(cache / "torch"))
        yield


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test's weight and hub caches out of the user's home."""
    cache = tmp_path_factory.getbasetemp() / "caches"
    monkeypatch.setenv("ZOO_CACHE_DIR", str(cache / "zoo"))
    monkeypatch.setenv("HF_HOME", str(cache / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(cache / "torch"))


@pytest.fixture(scope="session", autouse=True)
def _repository_weights_untouched():
    """No test may write into the checkout's weights/ folder: tests publish into manifests of their own."""

    def snapshot() -> dict[str, tuple[int, int]]:
        return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in (ROOT / "weights").iterdir()}

    before = snapshot()
    yield
    after = snapshot()
    changed = sorted(n for n in before.keys() | after.keys() if before.get(n) != after.get(n))
    assert not changed, f"the test session changed {ROOT / 'weights'}: {changed} (restore with git checkout weights/)"
