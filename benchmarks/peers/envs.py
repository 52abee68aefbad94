"""The peers' runtimes, created on demand: one virtual environment per Python peer under
``.peers/venvs/<name>`` (git-ignored), the Flink jobs built with Maven into
``benchmarks/peers/flink/target``.

A venv is (re)built when its requirements file changed (a stamp holds the file's hash). Each peer gets
its own because their pins clash: quixstreams pins an older confluent-kafka than arrowflow uses.
arrowflow itself runs in the interpreter that runs the harness (the project's ``.venv``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["ROOT", "flink_command", "python_for"]

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("ARROWFLOW_PEERS_CACHE", ROOT / ".peers"))
FLINK_DIR = HERE / "flink"


def _log(msg: str) -> None:
    print(f"peers: {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str], log: Path, what: str, cwd: Path | None = None) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    if rc != 0:
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-30:])
        raise RuntimeError(f"{what} failed (exit {rc}; log {log}):\n{tail}")


def python_for(runtime: str) -> str:
    """The interpreter of ``runtime``: the harness's own for arrowflow, else the peer's venv (built now
    if missing or stale)."""
    if runtime == "arrowflow":
        return sys.executable
    reqs = HERE / "requirements" / f"{runtime}.txt"
    if not reqs.exists():
        raise ValueError(f"no requirements file for {runtime!r} ({reqs})")
    venv = CACHE / "venvs" / runtime
    py = venv / "bin" / "python"
    stamp = venv / ".peers-stamp"
    digest = hashlib.sha256(reqs.read_bytes()).hexdigest()
    if py.exists() and stamp.exists() and stamp.read_text() == digest:
        return str(py)
    _log(f"creating the {runtime} virtual environment in {venv} (pip install -r {reqs.name})")
    if venv.exists():
        shutil.rmtree(venv)
    log = CACHE / "logs" / f"venv-{runtime}.log"
    base = getattr(sys, "_base_executable", None) or sys.executable
    _run([base, "-m", "venv", str(venv)], log, f"python -m venv {venv}")
    _run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], log, "pip upgrade")
    _run([str(py), "-m", "pip", "install", "-q", "-r", str(reqs)], log, f"pip install -r {reqs}")
    stamp.write_text(digest)
    return str(py)


def _need_tool(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        _log(f"apt-get install {package} (for {tool})")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-qq"], check=False, env=env)
        subprocess.run(
            ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq", package], check=True, env=env
        )
        path = shutil.which(tool)
    if not path:
        raise RuntimeError(f"{tool} is needed for the Flink jobs: install {package}")
    return path


def _newest_source() -> float:
    files = [FLINK_DIR / "pom.xml", *(FLINK_DIR / "src").rglob("*.java")]
    return max(f.stat().st_mtime for f in files)


def flink_command(heap: str = "512m") -> list[str]:
    """``java ... -cp <jar:deps>`` for the Flink jobs (main class and arguments follow); builds the jobs
    with ``mvn -q package`` when the jar is missing or older than a source."""
    java = _need_tool("java", "openjdk-17-jdk-headless")
    mvn = _need_tool("mvn", "maven")
    jar = FLINK_DIR / "target" / "peers-flink.jar"
    cp_file = FLINK_DIR / "target" / "classpath.txt"
    if not jar.exists() or not cp_file.exists() or jar.stat().st_mtime < _newest_source():
        _log("building the Flink jobs (mvn -q package; the first build downloads Flink into ~/.m2)")
        _run(
            [mvn, "-q", "-B", "package", "-DskipTests"],
            CACHE / "logs" / "flink-build.log",
            "mvn package",
            FLINK_DIR,
        )
    classpath = f"{jar}{os.pathsep}{cp_file.read_text().strip()}"
    return [
        java,
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-XX:-UsePerfData",
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        # Flink 2.x on Java 17 needs these opens (what bin/config.sh passes as env.java.opts.all).
        *[
            f"--add-opens=java.base/{p}=ALL-UNNAMED"
            for p in (
                "java.lang",
                "java.util",
                "java.lang.reflect",
                "java.io",
                "java.nio",
                "java.net",
                "java.text",
                "java.time",
                "sun.nio.ch",
            )
        ],
        "-cp",
        classpath,
    ]
