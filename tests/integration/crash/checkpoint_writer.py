"""Writes checkpoints in a loop (the store crash tests kill it at random moments).

``checkpoint_writer.py DIR loop``: resume after the stored checkpoint and save ids n+1, n+2, ...
forever; prints ``ready`` after the first save.
``checkpoint_writer.py DIR inject STAGE ID``: save ids 1..ID and SIGKILL itself at ``STAGE`` of the
save of ``ID`` (through the store's ``on_stage`` hook).

Checkpoint ``i`` is recognisable: every position equals ``i`` and it holds ``i % 300`` committables
``"c<i>-<k>"`` (so documents vary in size and span several disk blocks).
"""

from __future__ import annotations

import os
import signal
import sys

from arrowflow import Split
from arrowflow.pipeline import Checkpoint, CheckpointStore

SPLITS = tuple(Split(split_id=f"s{k}", params={"k": k, "pad": "x" * 40}) for k in range(40))


def make(i: int) -> Checkpoint:
    return Checkpoint(
        checkpoint_id=i,
        splits=SPLITS,
        positions={s.split_id: i for s in SPLITS},
        finished=[s.split_id for s in SPLITS[: i % 5]],
        committables=[f"c{i}-{k}" for k in range(i % 300)],
    )


def main(argv: list[str]) -> int:
    directory, mode = argv[0], argv[1]
    if mode == "loop":
        store = CheckpointStore(directory)
        last = store.load()
        i = last.checkpoint_id + 1 if last is not None else 1
        store.save(make(i))
        print("ready", flush=True)
        while True:
            i += 1
            store.save(make(i))
    stage, crash_id = argv[2], int(argv[3])
    current = {"id": 0}

    def hook(s: str) -> None:
        if s == stage and current["id"] == crash_id:
            os.kill(os.getpid(), signal.SIGKILL)

    store = CheckpointStore(directory, on_stage=hook)
    for i in range(1, crash_id + 1):
        current["id"] = i
        store.save(make(i))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
