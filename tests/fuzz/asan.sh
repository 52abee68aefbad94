#!/bin/sh
# make asan: rebuild the Cython kernels with AddressSanitizer into build/asan/ (the normal in-place
# build under src/arrowflow/_ext is untouched) and run, under the ASan runtime, the kernel unit tests
# and the fuzz targets' corpus replay and smoke run (tests/fuzz). Any ASan report fails the run.
#
#   PYTHON      the interpreter with arrowflow[dev] installed (default .venv/bin/python)
#   ASAN_DIR    where the instrumented copy goes (default build/asan)
#   ASAN_TESTS  what pytest runs (default: the kernel tests and tests/fuzz)
#
# The ASan runtime is gcc's libasan (Debian/Ubuntu: libasan8 for gcc 12, a dependency of gcc
# itself); when missing and running as root it is installed with apt-get. Python is not rebuilt:
# the runtime is preloaded (LD_PRELOAD), Python allocates with malloc (PYTHONMALLOC=malloc) and
# Arrow with the system allocator (ARROW_DEFAULT_MEMORY_POOL=system), so ASan sees every heap
# buffer a kernel reads or writes.
set -eu

PYTHON=${PYTHON:-.venv/bin/python}
ASAN_DIR=${ASAN_DIR:-build/asan}
ASAN_TESTS=${ASAN_TESTS:-"tests/unit/test_avro_decode_kernel.py tests/unit/test_avro_encode_kernel.py tests/unit/test_bson_decode_kernel.py tests/unit/test_bson_kernel.py tests/unit/test_bulk_kernel.py tests/unit/test_datagen_kernel.py tests/unit/test_json_decode_kernel.py tests/unit/test_json_kernel.py tests/unit/test_json_quoted_fields.py tests/unit/test_kafka_fetch_kernel.py tests/unit/test_kafka_produce_kernel.py tests/unit/test_kernel_validation.py tests/unit/test_murmur2.py tests/unit/test_remote_write_kernel.py tests/fuzz"}

libasan() {
    p=$(gcc -print-file-name=libasan.so 2>/dev/null || true)
    if [ -n "$p" ] && [ -e "$p" ]; then
        readlink -f "$p"
    fi
}

LIBASAN=$(libasan)
if [ -z "$LIBASAN" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "asan: installing the ASan runtime (libasan8) with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libasan8 >/dev/null \
            || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libasan6 >/dev/null
        LIBASAN=$(libasan)
    fi
fi
if [ -z "$LIBASAN" ]; then
    echo "asan: ERROR: no ASan runtime (gcc -print-file-name=libasan.so); install libasan8 (apt-get install libasan8)" >&2
    exit 1
fi
echo "asan: runtime $LIBASAN"

# An instrumented copy of the package: the Python sources as they are, the kernels rebuilt.
rm -rf "$ASAN_DIR/src" "$ASAN_DIR/lib"
mkdir -p "$ASAN_DIR/src" "$ASAN_DIR/tmp" "$ASAN_DIR/lib"
cp -r src/arrowflow "$ASAN_DIR/src/"
find "$ASAN_DIR/src" \( -name '*.so' -o -name '__pycache__' \) -prune -exec rm -rf {} +
echo "asan: building the kernels with -fsanitize=address into $ASAN_DIR (a few minutes)"
CFLAGS="-fsanitize=address -fno-omit-frame-pointer -g" LDFLAGS="-fsanitize=address" \
    "$PYTHON" setup.py -q build_ext --build-lib "$ASAN_DIR/lib" --build-temp "$ASAN_DIR/tmp" --force
cp "$ASAN_DIR"/lib/arrowflow/_ext/*.so "$ASAN_DIR/src/arrowflow/_ext/"

export LD_PRELOAD="$LIBASAN"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1:detect_stack_use_after_return=0${ASAN_EXTRA:+:$ASAN_EXTRA}"
export PYTHONMALLOC=malloc
export ARROW_DEFAULT_MEMORY_POOL=system
export PYTHONPATH="$ASAN_DIR/src${PYTHONPATH:+:$PYTHONPATH}"

# Proof that the instrumented kernels are the ones imported.
"$PYTHON" - "$ASAN_DIR" <<'EOF'
import sys
from pathlib import Path

import arrowflow._ext as ext

root = Path(sys.argv[1]).resolve()
for name in ext.KERNELS:
    module = ext.load(name)
    path = Path(module.__file__).resolve()
    assert root in path.parents, f"{name} imported from {path}, not the ASan build under {root}"
    assert b"__asan_init" in path.read_bytes(), f"{path} is not built with AddressSanitizer"
print(f"asan: {len(ext.KERNELS)} instrumented kernels imported from {root}")
EOF

# shellcheck disable=SC2086
"$PYTHON" -m pytest -p no:cacheprovider -q $ASAN_TESTS
