#!/usr/bin/env bash
# Cross-compile tests/c/test_kernels.c for AArch64 and run it under qemu-user twice: on a CPU with the
# dot product extension (-cpu max: the SDOT kernels) and on one without (-cpu cortex-a53: the armv8-a
# baseline kernels). Exit 0 when both pass, 1 on a failure, 2 when the toolchain or qemu is missing.
#   Needs: apt-get install -y gcc-aarch64-linux-gnu qemu-user
set -euo pipefail
cd "$(dirname "$0")/.."

CC=${AARCH64_CC:-aarch64-linux-gnu-gcc}
QEMU=${QEMU_AARCH64:-qemu-aarch64}
SYSROOT=${AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}
for tool in "$CC" "$QEMU"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "test_neon.sh: $tool not found (apt-get install -y gcc-aarch64-linux-gnu qemu-user)" >&2
        exit 2
    fi
done

K=src/llamapy/_kernels
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
bin=$out/test_kernels

# Static, so qemu needs no sysroot; a dynamic link against the sysroot is the fallback.
flags=(-O3 -std=gnu11 -ffp-contract=off -fno-strict-aliasing -fopenmp -Wall -I "$K")
srcs=(tests/c/test_kernels.c "$K"/types.c "$K"/dispatch.c "$K"/matmul.c "$K"/ref/*.c "$K"/x86/*.c "$K"/arm/*.c)
if ! "$CC" -static "${flags[@]}" "${srcs[@]}" -lm -o "$bin" 2>"$out/static.log"; then
    grep -v "statically linked" "$out/static.log" >&2 || true
    echo "test_neon.sh: static link failed, linking dynamically against $SYSROOT" >&2
    "$CC" "${flags[@]}" "${srcs[@]}" -lm -o "$bin"
fi

status=0
# cpu model, and the dotprod flag its run must report (so both kernel sets are known to have run)
for run in "max 1" "cortex-a53 0"; do
    set -- $run
    echo "== qemu-aarch64 -cpu $1"
    if ! "$QEMU" -L "$SYSROOT" -cpu "$1" "$bin" | tee "$out/log"; then
        echo "test_neon.sh: FAILED on -cpu $1" >&2
        status=1
    fi
    if ! grep -q "dotprod=$2" "$out/log"; then
        echo "test_neon.sh: -cpu $1 did not report dotprod=$2" >&2
        status=1
    fi
    if ! grep -q "^isa neon$" "$out/log"; then
        echo "test_neon.sh: the neon kernel table was not tested on -cpu $1" >&2
        status=1
    fi
    if grep -q "^SKIP neon vec_dot" "$out/log"; then
        echo "test_neon.sh: some weight types have no NEON vec_dot on -cpu $1" >&2
        status=1
    fi
done
[ $status -eq 0 ] && echo "test_neon.sh: NEON kernels pass with and without dotprod"
exit $status
