#!/usr/bin/env bash
# Set up llamapy on a fresh machine and run the main job on the default model:
# system packages (C compiler; aarch64 cross compiler and qemu for the NEON kernel tests; chromium and
# chromedriver for the server's web page test), a virtual
# environment in .venv with llamapy built from this checkout, the default model in ~/.cache/llamapy.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v gcc >/dev/null || missing+=(gcc)
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
command -v chromium >/dev/null || missing+=(chromium)            # the server's web page test (selenium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else sudo="none"; fi
    if [ "$sudo" != none ] && command -v apt-get >/dev/null; then
        $sudo apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}" >/dev/null
    else
        echo "setup: please install ${missing[*]} (needed by the NEON kernel and web page tests)" >&2
    fi
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -U pip "setuptools>=77" wheel
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

# The main job: what the kernels found on this CPU, then a greedy completion on the default model (-no-cnv:
# a raw completion; without it the model's chat template would start an interactive chat).
.venv/bin/llamapy info
.venv/bin/llamapy-cli -no-cnv -p "The three primary colors are" -n 48 --temp 0 </dev/null
