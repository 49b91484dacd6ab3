"""The environment a model was trained in: OS, Python, CPU, GPUs, installed distributions,
container. Reads files of this machine (``/proc``) and asks ``nvidia-smi`` when present; never
environment variables (the caller passes the ones worth recording)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from provenance.certificate import Container, Cpu, Environment, Package, PythonInfo

REPRODUCIBILITY_VARIABLES = (
    "PYTHONHASHSEED",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "CUBLAS_WORKSPACE_CONFIG",
    "TF_DETERMINISTIC_OPS",
)
"""Environment variables that change results; the CLI records these (values) when set."""

Warn = Callable[[str], None]


def packages() -> tuple[Package, ...]:
    """Every installed distribution visible to this interpreter, sorted by normalised name
    (the first one found on sys.path wins, as for imports)."""
    found: dict[str, Package] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        key = re.sub(r"[-_.]+", "-", name).lower()
        found.setdefault(key, Package(name=key, version=dist.version))
    return tuple(found[k] for k in sorted(found))


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def gpus(warn: Warn) -> tuple[str, ...]:
    """GPU names and driver versions from ``nvidia-smi``, when it is installed."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=15,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        warn(f"nvidia-smi failed, GPUs not recorded: {exc}")
        return ()
    return tuple(line.strip() for line in out.splitlines() if line.strip())


_CONTAINER_ID = re.compile(
    r"(?:docker|containerd|cri-containerd|libpod|containers)[/-]([0-9a-f]{64})"
)


def container(image_id: str | None = None) -> Container | None:
    """The container this process runs in (None outside one). Its id comes from
    ``/proc/self/cgroup`` or ``mountinfo``; the image id cannot be seen from inside, so it is
    passed in (e.g. by whoever started the container)."""
    texts = []
    for name in ("/proc/self/cgroup", "/proc/self/mountinfo"):
        with contextlib.suppress(OSError):
            texts.append(Path(name).read_text(errors="replace"))
    match = next((m for t in texts if (m := _CONTAINER_ID.search(t))), None)
    inside = (
        match is not None or Path("/.dockerenv").exists() or Path("/run/.containerenv").exists()
    )
    if not inside and image_id is None:
        return None
    return Container(id=match.group(1) if match else None, image_id=image_id)


def capture_environment(
    *,
    image_id: str | None = None,
    variables: Mapping[str, str] | None = None,
    warn: Warn = lambda _: None,
) -> Environment:
    return Environment(
        os=platform.platform(),
        python=PythonInfo(
            version=platform.python_version(), implementation=platform.python_implementation()
        ),
        cpu=Cpu(model=cpu_model(), architecture=platform.machine(), count=os.cpu_count() or 1),
        gpus=gpus(warn),
        packages=packages(),
        container=container(image_id),
        variables=dict(sorted((variables or {}).items())),
    )
