"""A minimal kopf operator used only to test `operator_proc` itself.

Role: `tests/test_support_harness.py` starts it by file path (not by module:
see `operator_proc` on sys.path) to prove that the subprocess helper starts,
kills and restarts a real kopf operator against the emulator.
"""

from typing import Any

import kopf


@kopf.on.create("kubegrid.io", "v1alpha1", "gridsearches")
def mark_seen(patch: kopf.Patch, **_: Any) -> None:
    # The test waits for this field to know the operator handled the object.
    patch.status["seenBy"] = "demo-operator"


@kopf.on.delete("kubegrid.io", "v1alpha1", "gridsearches")
def note_deletion(logger: kopf.Logger, name: str | None, **_: Any) -> None:
    # Having a deletion handler makes kopf add (and later remove) a finalizer,
    # which exercises the emulator's JSON-patch and finalizer paths.
    logger.info(f"demo-operator released {name}")
