"""The C kernel harness tests/c/test_kernels.c: NEON under qemu-aarch64, and native SIMD under sanitizers.

Both build the kernels' C sources directly (no Python extension involved) and compare every SIMD
kernel table against the scalar reference; see the harness for the checks and error budgets.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "src" / "llamapy" / "_kernels"
HARNESS = ROOT / "tests" / "c" / "test_kernels.c"
CROSS_TOOLS = "apt-get install -y gcc-aarch64-linux-gnu qemu-user"


def _summary(output: str) -> str:
    """The failing lines and the final count, for assertion messages."""
    lines = output.splitlines()
    return "\n".join([ln for ln in lines if ln.startswith("FAIL") or "got" in ln] + lines[-1:])


def test_neon_kernels_under_qemu():
    """NEON kernels, with and without the dot product extension, match the scalar reference."""
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "test_neon.sh")], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode == 2:
        pytest.fail(f"cross toolchain or qemu missing ({CROSS_TOOLS}): {proc.stderr.strip()}")
    assert proc.returncode == 0, f"{_summary(proc.stdout)}\n{proc.stderr[-4000:]}"
    assert proc.stdout.count(" 0 failed") == 2


def test_kernels_native_sanitized(tmp_path):
    """The same harness on this machine's own ISAs, under AddressSanitizer and UBSan."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.fail("no C compiler (gcc or cc) on PATH")
    sources = [HARNESS] + [KERNELS / s for s in ("types.c", "dispatch.c", "matmul.c")]
    sources += sorted(p for d in ("ref", "x86", "arm") for p in (KERNELS / d).glob("*.c"))
    exe = tmp_path / "test_kernels"
    build = subprocess.run(
        [cc, "-O1", "-g", "-std=gnu11", "-ffp-contract=off", "-fno-strict-aliasing", "-fopenmp",
         "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer",
         "-I", str(KERNELS), *map(str, sources), "-lm", "-o", str(exe)],
        capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-4000:]
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "ASAN_OPTIONS": "detect_leaks=1"})
    assert proc.returncode == 0, f"{_summary(proc.stdout)}\n{proc.stderr[-4000:]}"
    assert proc.stdout.rstrip().endswith(" 0 failed")
