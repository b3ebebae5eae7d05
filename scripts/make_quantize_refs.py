"""Make tests/data/quantize/refs.json: what llama.cpp's quantizer (via llama-cpp-python) writes for each case.

Run with the peer's interpreter (it needs llama_cpp, and imports llamapy from src/ to make the inputs):

    PEER_VENV/bin/python scripts/make_quantize_refs.py [OUT.json]

Inputs, made with tests/quant_models.py exactly as tests/test_quantize.py makes them again:
  tiny      write_tiny_llama(): synthetic 16-layer llama, untied output, F32/F16/BF16 sources
  smollm2   float_export() of the cached SmolLM2-135M-Instruct Q4_1 (tied embeddings, 576 columns)
  gemma3    float_export() of the cached Gemma 3 270M Q4_K_M (tied embeddings, 640 columns, GQA 4)
  smollm2-q4_1, gemma3-q4_k_m   the cached files themselves (requantization cases)

Each case is llama-quantize's argument list (options, then TYPE) run through llama_model_quantize with 2 threads.
Recorded per case: the return code; the output type of every tensor (from the file, or from the log for a dry
run); for files, the sha256 of the file and of its header (everything before the tensor data); the log lines
that are not per-tensor lines (type-selection warnings, sizes, errors; for the reference models, which warn
about a shape fallback for most tensors, only the count of those warnings), and for the cases in FULL_LOG
every log line, to check llamapy's -v output line for line. Per model, names is the output's tensor order and
tensor_sha maps tensor -> type -> the first 16 hex digits of the sha256 of its bytes in any output, so a test
can check every tensor of every case without writing every file.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "src"), str(HERE.parent / "tests")]

import llama_cpp  # noqa: E402
from quant_models import file_sha256, float_export, write_tiny_llama  # noqa: E402

from llamapy.gguf import GGUFReader, type_name  # noqa: E402
from llamapy.models import model_path  # noqa: E402
from llamapy.quantize import parse_ftype  # noqa: E402

OUT = HERE.parent / "tests" / "data" / "quantize" / "refs.json"
N_THREADS = 2

TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M",
         "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "COPY"]
DRY_ONLY = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M",
            "MXFP4_MOE", "Q2_K_S", "Q4_K_M"]

CASES = (
    [("tiny", [t]) for t in TYPES]
    + [("smollm2", [t]) for t in TYPES]
    + [("gemma3", [t]) for t in TYPES]
    + [(m, ["--dry-run", t]) for m in ("tiny", "smollm2", "gemma3") for t in DRY_ONLY]
    + [
        ("tiny", ["--pure", "Q4_K_M"]),
        ("tiny", ["--pure", "Q3_K_S"]),
        ("tiny", ["--leave-output-tensor", "Q4_K_M"]),
        ("tiny", ["--leave-output-tensor", "Q6_K"]),
        ("tiny", ["--output-tensor-type", "q8_0", "--token-embedding-type", "Q4_0", "Q4_K_M"]),
        ("tiny", ["--output-tensor-type", "f16", "Q4_0"]),
        ("tiny", ["--tensor-type", "attn_v=q8_0", "--tensor-type", "Ffn_Up=q5_1", "--tensor-type",
                  r"blk\.1[0-5]\.ffn_down=iq4_nl", "Q5_K_M"]),
        ("tiny", ["--tensor-type", "attn_v=q4_K", "Q4_K_M"]),
        ("tiny", ["--override-kv", "general.name=str:renamed", "--override-kv", "llama.context_length=int:-512",
                  "--override-kv", "test.f=float:0.25", "--override-kv", "test.b=bool:true", "Q3_K_M"]),
        ("tiny", ["--pure", "--dry-run", "IQ2_XXS"]),
        ("gemma3", ["--pure", "Q4_K_M"]),
        ("smollm2", ["--output-tensor-type", "q4_0", "Q5_K_M"]),
        ("smollm2-q4_1", ["Q4_K_M"]),
        ("smollm2-q4_1", ["--allow-requantize", "Q4_K_M"]),
        ("smollm2-q4_1", ["--allow-requantize", "--pure", "Q8_0"]),
        ("gemma3-q4_k_m", ["--allow-requantize", "Q4_0"]),
        ("gemma3-q4_k_m", ["COPY"]),
    ]
)

FULL_LOG = [("tiny", ["Q4_K_M"]), ("tiny", ["COPY"]), ("tiny", ["F16"]), ("tiny", ["--dry-run", "IQ2_XXS"]),
            ("tiny", ["--dry-run", "Q4_K_M"]), ("gemma3", ["--dry-run", "Q4_K_M"]),
            ("smollm2", ["--dry-run", "Q4_K_M"]),
            ("tiny", ["--tensor-type", "attn_v=q8_0", "--tensor-type", "Ffn_Up=q5_1", "--tensor-type",
                      r"blk\.1[0-5]\.ffn_down=iq4_nl", "Q5_K_M"])]
TENSOR_LINE = re.compile(r"^\[\s*\d+/\s*\d+\] (\S+)\s+- \[[^]]*\], type =\s*(\S+), (?:converting to \S+ \.\. )?"
                         r"size =\s*[\d.]+ MiB(?: ->\s*[\d.]+ MiB(?: \((\S+)\))?)?$")
LOG_LINE = re.compile(r"^(\[\s*\d+/\s*\d+\] |warning: |llama_tensor_get_type: |llama_model_quantize_impl: "
                      r"(model size|quant size|WARNING)|llama_model_quantize: failed)")


class LogCapture:
    """Collects llama.cpp's log text and hands back the quantizer's own lines."""

    def __init__(self):
        self.buf = []
        self.callback = llama_cpp.llama_log_callback(self._on_log)
        llama_cpp.llama_log_set(self.callback, ctypes.c_void_p(0))

    def _on_log(self, level, text, _user):
        if level != 1:      # GGML_LOG_LEVEL_DEBUG
            self.buf.append(text.decode("utf-8", "replace"))

    def take(self) -> list[str]:
        lines = "".join(self.buf).split("\n")
        self.buf.clear()
        return [line.rstrip() for line in lines if LOG_LINE.match(line)]


def ggml_type_id(name: str) -> int:
    from llamapy.gguf import GGMLType
    for t in GGMLType:
        if type_name(t).lower() == name.lower():
            return int(t)
    raise ValueError(name)


def run_case(src: str, dst: str, argv: list[str], log: LogCapture) -> int:
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = N_THREADS
    keep = []       # ctypes buffers that must outlive the call
    overrides, patterns = [], []
    args = list(argv)
    while args[0].startswith("--"):
        opt = args.pop(0)
        if opt == "--dry-run":
            params.dry_run = True
        elif opt == "--pure":
            params.pure = True
        elif opt == "--allow-requantize":
            params.allow_requantize = True
        elif opt == "--leave-output-tensor":
            params.quantize_output_tensor = False
        elif opt == "--output-tensor-type":
            params.output_tensor_type = ggml_type_id(args.pop(0))
        elif opt == "--token-embedding-type":
            params.token_embedding_type = ggml_type_id(args.pop(0))
        elif opt == "--tensor-type":
            pattern, _, tname = args.pop(0).partition("=")
            patterns.append((pattern.lower().encode(), ggml_type_id(tname)))
        elif opt == "--override-kv":
            overrides.append(args.pop(0))
        else:
            raise ValueError(opt)
    option = parse_ftype(args.pop(0))
    params.ftype = int(option.ftype)
    params.only_copy = option.name == "COPY"
    if overrides:
        arr = (llama_cpp.llama_model_kv_override * (len(overrides) + 1))()
        for o, text in zip(arr, overrides):
            key, _, rest = text.partition("=")
            kind, _, value = rest.partition(":")
            o.key = key.encode()
            if kind == "int":
                o.tag, o.value.val_i64 = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT, int(value)
            elif kind == "float":
                o.tag, o.value.val_f64 = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_FLOAT, float(value)
            elif kind == "bool":
                o.tag, o.value.val_bool = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_BOOL, value == "true"
            else:
                o.tag, o.value.val_str = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR, value.encode()
        arr[len(overrides)].key = b""
        params.kv_overrides = arr
        keep.append(arr)
    if patterns:
        arr = (llama_cpp.llama_model_tensor_override * (len(patterns) + 1))()
        for o, (pattern, tid) in zip(arr, patterns):
            o.pattern, o.type = pattern, tid
        arr[len(patterns)].pattern = None
        params.tt_overrides = arr
        keep.append(arr)
    log.take()
    return llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    llama_cpp.llama_backend_init()
    log = LogCapture()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inputs = {
            "tiny": write_tiny_llama(tmp / "tiny.gguf"),
            "smollm2": float_export(model_path("smollm2"), tmp / "smollm2-f16.gguf"),
            "gemma3": float_export(model_path("gemma3"), tmp / "gemma3-f16.gguf"),
            "smollm2-q4_1": model_path("smollm2"),
            "gemma3-q4_k_m": model_path("gemma3"),
        }
        refs = {"llama_cpp_python": llama_cpp.__version__, "n_threads": N_THREADS,
                "inputs": {k: file_sha256(p) for k, p in inputs.items()}, "names": {}, "tensor_sha": {},
                "cases": []}
        only = os.environ.get("QUANT_REFS_ONLY")     # e.g. "tiny": a quick partial run while developing
        for model, argv in CASES:
            if only and model not in only.split(","):
                continue
            dst = tmp / "out.gguf"
            t0 = time.perf_counter()
            rc = run_case(str(inputs[model]), str(dst), argv, log)
            case = {"model": model, "args": argv, "rc": rc}
            lines = log.take()
            messages = [line for line in lines if not TENSOR_LINE.match(line)]
            if model == "tiny":
                case["messages"] = messages
            else:   # the reference models warn about a shape fallback for most tensors: count those lines
                case["messages"] = [line for line in messages if not line.startswith("warning: ")]
                case["n_warnings"] = len(messages) - len(case["messages"])
            if rc == 0 and "--dry-run" in argv:
                rows = [TENSOR_LINE.match(line).groups() for line in lines if TENSOR_LINE.match(line)]
                assert refs["names"].setdefault(model, [r[0] for r in rows]) == [r[0] for r in rows]
                case["types"] = " ".join(r[2] or r[1] for r in rows)
            if rc == 0 and "--dry-run" not in argv:
                names, described = describe_output(dst, refs["tensor_sha"].setdefault(model, {}))
                assert refs["names"].setdefault(model, names) == names, "tensor order changed between cases"
                case.update(described)
            if (model, argv) in FULL_LOG:
                case["log"] = lines
            if dst.exists():
                dst.unlink()
            refs["cases"].append(case)
            print(f"{model:14s} {' '.join(argv):60s} rc={rc} {time.perf_counter() - t0:6.2f}s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(compact_json(refs))
    print("wrote", out)


def compact_json(refs: dict) -> str:
    """One line per case and per tensor: readable diffs without a line per list item."""
    parts = []
    for key, value in refs.items():
        if key == "cases":
            body = ",\n".join("  " + json.dumps(c) for c in value)
            parts.append(f' "cases": [\n{body}\n ]')
        elif key in ("tensor_sha", "names"):
            body = ",\n".join(f"  {json.dumps(m)}: {json.dumps(v)}" for m, v in value.items())
            parts.append(f' {json.dumps(key)}: {{\n{body}\n }}')
        else:
            parts.append(f" {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def describe_output(path: Path, tensor_sha: dict) -> tuple[list[str], dict]:
    reader = GGUFReader(path)
    with open(path, "rb") as f:
        header = f.read(reader.data_offset)
    types = []
    for t in reader.tensors:
        digest = hashlib.sha256(t.data.reshape(-1).view("u1")).hexdigest()[:16]
        known = tensor_sha.setdefault(t.name, {}).setdefault(type_name(t.type), digest)
        assert known == digest, f"{t.name} {type_name(t.type)} differs between two llama.cpp outputs"
        types.append(type_name(t.type))
    return [t.name for t in reader.tensors], {
        "file_sha256": file_sha256(path), "size": os.path.getsize(path),
        "header_sha256": hashlib.sha256(header).hexdigest(), "types": " ".join(types)}


if __name__ == "__main__":
    main()
