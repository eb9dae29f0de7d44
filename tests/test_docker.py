"""The Docker image, checked statically (no Docker engine runs where the tests run): its CUDA
major matches the one CuPy wheel it installs, it installs extras pyproject declares, it runs
as a non-root user with the kernel caches on a volume, and compose reserves a GPU."""

from __future__ import annotations

import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _installed_extras() -> set[str]:
    (extras,) = re.findall(r'pip install "\.\[([^\]]+)\]"', DOCKERFILE)
    return {e.strip() for e in extras.split(",")}


def test_cuda_major_matches_the_one_cupy_wheel():
    (image, major) = re.findall(
        r"^FROM (nvidia/cuda:(\d+)\.\d+\.\d+-devel-\S+)", DOCKERFILE, re.MULTILINE
    )[0]
    extras = _installed_extras()
    cupy_extras = {e for e in extras if any("cupy" in d for d in EXTRAS.get(e, []))}
    assert cupy_extras == {f"cuda{major}"}, f"{image} with extras {sorted(extras)}"
    (wheel,) = [d for d in EXTRAS[f"cuda{major}"] if d.startswith("cupy")]
    assert wheel.startswith(f"cupy-cuda{major}x")


def test_installs_declared_extras_including_nvml_and_test():
    extras = _installed_extras()
    assert extras <= set(EXTRAS) and {"nvml", "test"} <= extras


def test_non_root_user_and_cache_volume():
    users = re.findall(r"^USER (\S+)", DOCKERFILE, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    (cache,) = re.findall(r"CUPY_CACHE_DIR=(\S+)", DOCKERFILE)
    volumes = re.findall(r'^VOLUME \["([^"]+)"\]', DOCKERFILE, re.MULTILINE)
    assert any(cache.startswith(volume) for volume in volumes)


def test_entry_points_and_compose_gpu_reservation():
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert 'ENTRYPOINT ["docker/entrypoint.sh"]' in DOCKERFILE
    for command in ("gpu-tests)", "bench)", "gpu-check)"):
        assert command in entrypoint
    compose = (ROOT / "docker" / "compose.yaml").read_text()
    assert "driver: nvidia" in compose and "capabilities: [gpu]" in compose
    assert "dockerfile: docker/Dockerfile" in compose
