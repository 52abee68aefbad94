"""``make fuzz``: run the fuzz targets coverage-guided with atheris (libFuzzer) for as long as asked.

    python tests/fuzz/run.py [--seconds N] [--jobs-dir DIR] [TARGET ...]   # all targets by default
    python tests/fuzz/run.py --replay TARGET FILE_OR_HEX ...               # rerun saved inputs
    python tests/fuzz/run.py --child TARGET [libFuzzer flags ...]          # one target (internal)

Each target runs in its own process (libFuzzer stops at the first crash) for ``--seconds``, with the
target's seeds and its saved corpus as the starting corpus and a working corpus under
``build/fuzz/<target>/`` (not committed). A crash (SIGSEGV from a guard page, an ASan report, a
:class:`targets.Finding`, an exception the target does not allow) is written by libFuzzer to
``tests/fuzz/corpus/<target>/crash-<sha1>``: commit it and the smoke run (``test_fuzz_smoke.py``,
part of ``make test``) replays it from then on. The summary (inputs run per target, findings) is
printed and written to ``build/fuzz/summary.json``.

Coverage: atheris instruments the Python code of the targets, the formats and connectors they call
and the oracles; the compiled kernels are not instrumented (that needs clang's SanitizerCoverage),
nor are pyarrow and fastavro. Inside those the search is driven by the Python-visible outcome
(accepted, slow path, which error), the structure-aware inputs (``inputs.py``) and a custom
mutator that mixes libFuzzer's mutations with the smoke run's (``mutate.py``), so the corpus keeps
the seeds' structure. Inputs are capped at 4096 bytes (``-max_len``), enough for every structure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CORPUS = HERE / "corpus"
sys.path.insert(0, str(HERE))


def _child(name: str, argv: list[str]) -> None:
    """Run one target under atheris (never returns normally: libFuzzer exits)."""
    import atheris

    with atheris.instrument_imports(include=["arrowflow", "targets", "inputs", "guard"]):
        import targets

        import arrowflow.connectors.mongodb
        import arrowflow.connectors.push
        import arrowflow.formats  # noqa: F401

    import random

    from mutate import mutate

    target = targets.TARGETS[name]
    run = target.run
    saved = CORPUS / name
    pool = target.seeds() + ([p.read_bytes() for p in sorted(saved.iterdir())] if saved.is_dir() else [])

    def one(data: bytes) -> None:
        run(data)

    def mutator(data: bytes, max_size: int, seed: int) -> bytes:
        # Half libFuzzer's own mutations, half the structure-keeping ones of the smoke run (splices
        # with the seeds, length fields set to edge values): most of the work happens in compiled
        # code (the kernels, pyarrow, fastavro) that libFuzzer cannot see, so its coverage alone
        # would shrink the corpus to a few bytes and lose the inputs' structure.
        rng = random.Random(seed)
        if rng.random() < 0.5:
            out = atheris.Mutate(data, max_size)
        else:
            out = mutate(rng, data if data and rng.random() < 0.8 else rng.choice(pool), pool)
        return out[:max_size]

    atheris.Setup([sys.argv[0], *argv], one, custom_mutator=mutator)
    atheris.Fuzz()


def _seed_dir(name: str, work: Path) -> Path:
    import targets

    seeds = work / "seeds"
    seeds.mkdir(parents=True, exist_ok=True)
    for k, data in enumerate(targets.TARGETS[name].seeds()):
        (seeds / f"seed-{k:03d}").write_bytes(data)
    return seeds


_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_STAT = re.compile(r"#(\d+)\s+(?:pulse|NEW|REDUCE|DONE|INITED)")


def fuzz(names: list[str], seconds: int, jobs: Path) -> dict[str, dict[str, object]]:
    summary: dict[str, dict[str, object]] = {}
    for name in names:
        work = jobs / name
        corpus = work / "corpus"
        corpus.mkdir(parents=True, exist_ok=True)
        saved = CORPUS / name
        saved.mkdir(parents=True, exist_ok=True)
        seeds = _seed_dir(name, work)
        before = set(saved.iterdir())
        cmd = [
            sys.executable,
            str(Path(__file__)),
            "--child",
            name,
            f"-max_total_time={seconds}",
            "-timeout=60",
            "-rss_limit_mb=4096",
            "-print_final_stats=1",
            "-max_len=4096",
            f"-artifact_prefix={saved}/",
            str(corpus),
            str(seeds),
            str(saved),
        ]
        start = time.monotonic()
        print(f"== {name}: {seconds} s", flush=True)
        log = work / "fuzz.log"
        with log.open("w") as out:
            rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        text = log.read_text(errors="replace")
        runs = 0
        m = _DONE.search(text)
        if m:
            runs = int(m.group(1))
        else:
            counts = [int(x) for x in _STAT.findall(text)]
            runs = max(counts) if counts else 0
        found = sorted(p.name for p in set(saved.iterdir()) - before)
        summary[name] = {
            "runs": runs,
            "seconds": round(time.monotonic() - start, 1),
            "exit": rc,
            "findings": found,
            "log": str(log),
        }
        status = "no finding" if rc == 0 and not found else f"FINDING (exit {rc}): {found} - see {log}"
        print(f"   {runs} inputs, {status}", flush=True)
    return summary


def replay(name: str, items: list[str]) -> int:
    import targets

    bad = 0
    for item in items:
        path = Path(item)
        data = path.read_bytes() if path.exists() else bytes.fromhex(item)
        try:
            targets.TARGETS[name].run(data)
            print(f"{item}: ok")
        except Exception as exc:
            bad += 1
            print(f"{item}: {exc!r}")
    return 1 if bad else 0


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3:])
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", "60")))
    parser.add_argument("--jobs-dir", type=Path, default=ROOT / "build" / "fuzz")
    parser.add_argument("--replay", action="store_true", help="rerun inputs: TARGET FILE_OR_HEX ...")
    parser.add_argument("names", nargs="*")
    args = parser.parse_args()
    import targets

    if args.replay:
        return replay(args.names[0], args.names[1:])
    names = args.names or sorted(targets.TARGETS)
    unknown = [n for n in names if n not in targets.TARGETS]
    if unknown:
        parser.error(f"unknown targets {unknown}; choose from {sorted(targets.TARGETS)}")
    summary = fuzz(names, args.seconds, args.jobs_dir)
    args.jobs_dir.mkdir(parents=True, exist_ok=True)
    (args.jobs_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\ntarget                     inputs   seconds  findings")
    for name, row in summary.items():
        print(f"{name:<26} {row['runs']:>8} {row['seconds']:>9}  {len(row['findings'])}")  # type: ignore[arg-type]
    return 1 if any(row["findings"] or row["exit"] for row in summary.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
