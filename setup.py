"""Builds the Cython kernels in ``ext/`` into ``arrowflow._ext.*``.

There is no pure-Python fallback at run time: if a kernel fails to build, the install fails.
"""

from __future__ import annotations

import os
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
EXT_DIR = HERE / "ext"

compile_args = ["-O3", "-fno-strict-aliasing", "-Wno-unused-function"]
if os.environ.get("ARROWFLOW_DEBUG_BUILD"):
    compile_args = ["-O0", "-g"]

extensions = [
    Extension(
        f"arrowflow._ext.{pyx.stem}",
        [str(pyx.relative_to(HERE))],
        include_dirs=[str(EXT_DIR.relative_to(HERE))],
        # Headers are part of the kernels: editing one must trigger a rebuild.
        depends=[str(h.relative_to(HERE)) for h in sorted(EXT_DIR.glob("*.h"))]
        + [str(h.relative_to(HERE)) for h in sorted(EXT_DIR.glob("*.pxd"))]
        + [str(h.relative_to(HERE)) for h in sorted(EXT_DIR.glob("*.pxi"))],
        extra_compile_args=compile_args,
        extra_link_args=["-pthread"],
    )
    for pyx in sorted(EXT_DIR.glob("*.pyx"))
    # ARROWFLOW_EXT_ONLY=json,murmur2 rebuilds just those kernels (a developer convenience).
    if not os.environ.get("ARROWFLOW_EXT_ONLY")
    or pyx.stem in os.environ["ARROWFLOW_EXT_ONLY"].split(",")
]

if not extensions:
    # An sdist without ext/*.pyx (see MANIFEST.in) would otherwise build a pure-Python wheel that
    # installs fine and fails at the first kernel call.
    raise SystemExit(f"setup.py: no kernel sources (ext/*.pyx) under {EXT_DIR}; nothing to build")

setup(
    # One compiler per core: eleven kernels at -O3 take minutes one after another (pip install, make
    # dist and the packaging test all build them).
    options={"build_ext": {"parallel": os.cpu_count() or 1}},
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
            "embedsignature": True,
        },
    ),
)
