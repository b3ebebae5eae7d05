"""The build runs on any x86-64: on CPUs without AVX2 or AVX-512 the dispatcher falls back, never SIGILL.

qemu-user emulates older CPUs (`-cpu Nehalem`: SSE4.2, no AVX; `-cpu SandyBridge`: AVX but no AVX2, FMA
or F16C; `-cpu Haswell`: AVX2, no AVX-512). Under them we run the C kernel harness and the real compiled
extension, and check that the chosen path is the best one the emulated CPU has and that its results are
the ones the host computes on the same path. (The extension runs under SandyBridge rather than Nehalem:
numpy 2.4 itself stops with SIGILL on anything older.)
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import llamapy

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "src" / "llamapy" / "_kernels"
QEMU = "qemu-x86_64"

pytestmark = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                                reason="x86-64 CPU models are emulated only on an x86-64 host")


def _need(tool):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} not found: install it (apt-get install -y qemu-user gcc); scripts/setup.sh does")


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """tests/c/test_kernels.c built with the project's flags (no -march: the baseline is plain x86-64)."""
    _need("gcc")
    out = tmp_path_factory.mktemp("cpu") / "test_kernels"
    srcs = [ROOT / "tests/c/test_kernels.c", KERNELS / "types.c", KERNELS / "dispatch.c", KERNELS / "matmul.c",
            *sorted(KERNELS.glob("ref/*.c")), *sorted(KERNELS.glob("x86/*.c")), *sorted(KERNELS.glob("arm/*.c"))]
    subprocess.run(["gcc", "-O3", "-std=gnu11", "-ffp-contract=off", "-fno-strict-aliasing", "-fopenmp",
                    f"-I{KERNELS}", *map(str, srcs), "-lm", "-o", str(out)], check=True)
    return out


@pytest.mark.parametrize("cpu, tested, absent", [
    ("Nehalem", ["scalar"], ["avx2", "avx512"]),
    ("Haswell", ["scalar", "avx2"], ["avx512"]),
])
def test_kernel_harness_on_older_cpus(harness, cpu, tested, absent):
    _need(QEMU)
    run = subprocess.run([QEMU, "-cpu", cpu, str(harness)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    lines = run.stdout.splitlines()
    for isa in tested:
        assert f"isa {isa}" in lines
    for isa in absent:
        assert f"isa {isa}: not available on this CPU" in lines
    assert lines[-1].endswith(" 0 failed")


PROBE = """
import sys, numpy as np
from llamapy._kernels import _ops
from llamapy import quants
rng = np.random.default_rng(7)
x = rng.standard_normal((6, 512)).astype(np.float32)
out = [_ops.current_isa()]
for t in (2, 3, 6, 8, 12, 14):
    q = quants.quantize(x, t)
    y = np.empty((6, 6), np.float32)
    _ops.matmul(t, q, x, y, np.empty(_ops.matmul_work_size(t, 512, 6), np.uint8), 2)
    out.append(q.tobytes().hex()[:64] + ":" + quants.dequantize(q, t).tobytes().hex()[-64:] + ":" + y.tobytes().hex())
print("\\n".join(out))
"""


def _probe(prefix, env_extra):
    env = dict(os.environ, **env_extra)
    # the folder the llamapy under test was imported from: src/ in a checkout, site-packages for a wheel
    here = os.path.dirname(os.path.dirname(os.path.abspath(llamapy.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([here, env.get("PYTHONPATH", "")])
    run = subprocess.run([*prefix, sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout.splitlines()


@pytest.mark.parametrize("cpu, isa", [("SandyBridge", "scalar"), ("Haswell", "avx2")])
def test_extension_on_older_cpus_matches_host(cpu, isa):
    """The real extension imports under the emulated CPU, picks its best path and computes what the host does."""
    _need(QEMU)
    emulated = _probe([QEMU, "-cpu", cpu], {})
    host = _probe([], {"LLAMAPY_CPU": isa})
    assert emulated[0] == isa
    assert emulated == host
