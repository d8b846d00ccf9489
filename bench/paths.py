"""Where the benchmark keeps generated data and per-run files.

The cache (``bench/.cache/`` unless ``--cache`` says otherwise) is gitignored:
datasets are generated once and reused, each run gets a fresh folder.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO / "bench" / ".cache"


def cores() -> int:
    """Usable cores: the affinity mask, as kubegrid and the baseline see it."""
    return len(os.sched_getaffinity(0))


def kubegrid_command() -> list[str]:
    """The installed ``kubegrid`` script beside this interpreter."""
    script = Path(sys.executable).parent / "kubegrid"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "kubegrid.cli"]


def run_dir(cache: Path) -> Path:
    """A fresh folder for this run's manifests, logs and local outputs."""
    folder = cache / "runs" / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment (OPENBLAS_* untouched) plus ``extra``."""
    env = dict(os.environ)
    env.update(extra or {})
    return env
