"""The compiled kernels are what runs: no pure-Python fallback hides a broken build."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import arrowflow._ext as ext


def test_every_kernel_is_a_compiled_module() -> None:
    assert ext.COMPILED is True
    for name in ext.KERNELS:
        module = importlib.import_module(f"arrowflow._ext.{name}")
        assert Path(module.__file__ or "").suffix in (".so", ".pyd"), module.__file__


def test_every_pyx_is_listed() -> None:
    ext_dir = Path(__file__).resolve().parents[2] / "ext"
    assert sorted(p.stem for p in ext_dir.glob("*.pyx")) == sorted(ext.KERNELS)


def test_import_arrowflow_imports_no_client_library() -> None:
    code = (
        "import sys, arrowflow, arrowflow.connectors, arrowflow.formats, arrowflow.ops;"
        "heavy = {'polars','pandas','confluent_kafka','fastavro','click','rich','yaml','duckdb','orjson',"
        "'prometheus_client','aiohttp'};"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
