"""The distribution files: the sdist holds what a build needs; the wheel installs and runs with no compiler.

The sdist and the wheel are built by ``python -m build`` (the wheel from the unpacked sdist, in an
isolated build environment: what ``pip install`` from an sdist and a release do), into a temporary
folder. ``make test`` builds them once with ``make dist`` and passes the folder in
``ARROWFLOW_DIST_DIR``, which this module then reuses instead of building again (it must hold exactly
one sdist and one wheel of this version).

The wheel is installed into a fresh virtual environment with no compiler reachable: ``PATH`` is an
empty folder, ``CC``/``CXX``/``LDSHARED`` are ``/bin/false``, and pip may install binary wheels only.
Dependencies come from the package index as a user's would (pip's cache usually has them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import arrowflow

ROOT = Path(__file__).resolve().parents[3]
EXT = ROOT / "ext"
#: Building compiles every kernel at -O3 (minutes on a loaded 2-core machine); installing fetches
#: pyarrow, numpy and confluent-kafka wheels (from pip's cache when warm).
pytestmark = pytest.mark.timeout(3600)
COMPILERS = ("cc", "gcc", "c++", "g++", "clang", "x86_64-linux-gnu-gcc")


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, f"{folder}: expected one {pattern}, found {[p.name for p in found]}"
    return found[0]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    given = os.environ.get("ARROWFLOW_DIST_DIR")
    if given:
        folder = Path(given)
    else:
        folder = tmp_path_factory.mktemp("dist")
        # The same command as `make dist`: sdist first, then the wheel built from it.
        build = subprocess.run(
            [sys.executable, "-m", "build", "--outdir", str(folder), str(ROOT)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    version = arrowflow.__version__
    return Dist(_one(folder, f"arrowflow-{version}.tar.gz"), _one(folder, f"arrowflow-{version}-*.whl"))


def _sources(*patterns: str) -> list[str]:
    return sorted(p.name for pattern in patterns for p in EXT.glob(pattern))


def test_sdist_holds_kernel_sources_stubs_and_typing_marker(dist: Dist) -> None:
    with tarfile.open(dist.sdist) as tar:
        prefix = f"arrowflow-{arrowflow.__version__}/"
        names = {m.name.removeprefix(prefix) for m in tar.getmembers()}
    kernel_sources = [f"ext/{n}" for n in _sources("*.pyx", "*.pxd", "*.pxi", "*.h")]
    stubs = [f"src/arrowflow/_ext/{p.name}" for p in (ROOT / "src/arrowflow/_ext").glob("*.pyi")]
    assert any(n.endswith(".pxi") for n in kernel_sources), "no *.pxi in ext/: this check would be blind"
    wanted = [*kernel_sources, *stubs, "src/arrowflow/py.typed", "setup.py", "pyproject.toml", "README.md"]
    assert [n for n in wanted if n not in names] == []
    # Generated C and built modules do not belong in the sdist: the build cythonizes the sources.
    assert [n for n in names if n.endswith((".c", ".so", ".pyd"))] == []


def test_wheel_holds_a_compiled_module_per_kernel_stubs_and_typing_marker(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as whl:
        names = set(whl.namelist())
    compiled = {n.split("/")[-1].split(".")[0] for n in names if re.fullmatch(r"arrowflow/_ext/\w+\..*so", n)}
    assert sorted(compiled) == [Path(n).stem for n in _sources("*.pyx")]
    stubs = {f"arrowflow/_ext/{p.name}" for p in (ROOT / "src/arrowflow/_ext").glob("*.pyi")}
    assert stubs and stubs <= names
    assert "arrowflow/py.typed" in names
    assert not any(n.startswith(("ext/", "tests/")) for n in names)


@dataclass(frozen=True)
class Venv:
    python: Path
    env: dict[str, str]
    cwd: Path

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.python), *args], capture_output=True, text=True, env=self.env, cwd=self.cwd, check=False
        )

    def pip_install(self, requirement: str, wheel_dir: Path, report: Path) -> dict[str, Any]:
        out = self.run(
            "-m", "pip", "install", "--only-binary=:all:", "--find-links", str(wheel_dir),
            "--report", str(report), "--disable-pip-version-check", requirement,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
        return json.loads(report.read_text())


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    root = tmp_path_factory.mktemp("wheel-venv")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    no_tools = root / "bin"  # PATH: this empty folder only (the venv's python is called by path)
    no_tools.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "VIRTUAL_ENV", "CONDA")) and k not in ("PATH", "CC", "CXX")
    }
    env.update(PATH=str(no_tools), CC="/bin/false", CXX="/bin/false", LDSHARED="/bin/false")
    env["PYTHONNOUSERSITE"] = "1"
    assert [c for c in COMPILERS if shutil.which(c, path=env["PATH"])] == []
    work = root / "work"
    work.mkdir()
    yield Venv(root / "venv" / "bin" / "python", env, work)


KERNEL_PROBE = """
import importlib, importlib.util, json, sys
import arrowflow, arrowflow._ext as ext
files = {k: importlib.import_module("arrowflow._ext." + k).__file__ for k in ext.KERNELS}
print(json.dumps({
    "arrowflow": arrowflow.__file__,
    "prefix": sys.prefix,
    "kernels": files,
    "compiled": ext.COMPILED,
    "confluent_kafka": importlib.util.find_spec("confluent_kafka") is not None,
}))
"""

KAFKA_ROUNDTRIP = """
import json
import pyarrow as pa
import confluent_kafka
from arrowflow.connectors import KafkaSink, KafkaSource
from arrowflow.formats import Json

# librdkafka's in-process mock cluster: a real broker protocol over loopback, no server to start.
holder = confluent_kafka.Producer({"test.mock.num.brokers": 1, "log_level": 3})
brokers = holder.list_topics(timeout=60).brokers.values()
bootstrap = ",".join(f"{b.host}:{b.port}" for b in brokers)
n = 5000
data = pa.table({"id": pa.array(range(n), pa.int64()), "name": pa.array([f"row-{i}" for i in range(n)])})
with KafkaSink(bootstrap, topic="wheel") as sink:
    sink.write_table(data)
source = KafkaSource(bootstrap, topics=["wheel"], stopping_offsets="latest", format=Json(data.schema))
got = source.read_all().sort_by("id")
print(json.dumps({"client": confluent_kafka.version()[0], "rows": got.num_rows, "equal": got.equals(data)}))
"""


def _installed(report: dict[str, Any]) -> dict[str, str]:
    """Normalized project name -> the URL pip installed it from, per its ``--report``."""
    return {
        re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower(): item["download_info"]["url"]
        for item in report["install"]
    }


def test_wheel_installs_without_a_compiler_and_every_kernel_is_compiled(dist: Dist, venv: Venv) -> None:
    report = venv.pip_install("arrowflow", dist.wheel.parent, venv.cwd / "base.json")
    assert _installed(report)["arrowflow"] == dist.wheel.as_uri()
    out = venv.run("-c", KERNEL_PROBE)
    assert out.returncode == 0, out.stderr
    probe = json.loads(out.stdout)
    site = Path(probe["prefix"])
    # The installed copy ran, not the source tree.
    assert site in Path(probe["arrowflow"]).parents and ROOT not in Path(probe["arrowflow"]).parents
    assert sorted(probe["kernels"]) == [Path(n).stem for n in _sources("*.pyx")]
    for name, file in probe["kernels"].items():
        assert site in Path(file).parents and file.endswith(".so"), (name, file)
    assert probe["compiled"] is True
    # The base install pulls in no client library: extras stay optional.
    assert probe["confluent_kafka"] is False


def test_kafka_extra_installs_from_the_wheel_and_runs(dist: Dist, venv: Venv) -> None:
    base = venv.run("-c", "import arrowflow")
    if base.returncode != 0:  # this test also runs alone: install the base first
        venv.pip_install("arrowflow", dist.wheel.parent, venv.cwd / "base.json")
    report = venv.pip_install("arrowflow[kafka]", dist.wheel.parent, venv.cwd / "kafka.json")
    installed = _installed(report)
    assert "confluent-kafka" in installed, installed
    # arrowflow itself is already there; if pip did reinstall it, then from the same wheel.
    assert installed.get("arrowflow", dist.wheel.as_uri()) == dist.wheel.as_uri()
    out = venv.run("-c", KAFKA_ROUNDTRIP)
    assert out.returncode == 0, out.stderr[-4000:]
    result = json.loads(out.stdout)
    assert result["rows"] == 5000 and result["equal"] is True, result
