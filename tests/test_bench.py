"""`llamapy-bench` as a user runs it (a subprocess): llama-bench's tests, fields and output formats, parsed
back with the standard parsers (csv, json, sqlite3), and one-line errors. Tests are tiny (-p 8 -n 2 -r 2)."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import subprocess
import sys

import pytest

import llamapy
from llamapy.bench import FIELDS, BenchResult, BenchTest, parse_int_range, size_label
from llamapy.models import model_path

TINY = ("-p", "8", "-n", "2", "-r", "2", "-t", "1")


def run_bench(*args, timeout=600):
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(llamapy.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([here, env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "llamapy.cli.cmd_bench", *args], capture_output=True, env=env,
                          timeout=timeout)


@pytest.fixture(scope="module")
def smollm2():
    return str(model_path("smollm2"))


@pytest.fixture(scope="module")
def backend():
    from llamapy.runtime import backend_label
    return backend_label()


def test_markdown_table(smollm2, backend):
    r = run_bench("-m", smollm2, *TINY, "-pg", "4,2")
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr.decode()
    lines = out.split("\n")
    assert lines[0] == ("| model                          |       size |     params | backend    | threads "
                        "|            test |                  t/s |")
    assert lines[1] == ("| ------------------------------ | ---------: | ---------: | ---------- | ------: "
                        "| --------------: | -------------------: |")
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:5]]
    assert [row[5] for row in rows] == ["pp8", "tg2", "pp4+tg2"]
    for row in rows:
        assert row[:5] == ["llama 256M Q4_1", "92.10 MiB", "134.52 M", backend, "1"]
        assert re.fullmatch(r"\d+\.\d\d \u00b1 \d+\.\d\d", row[6]), row
    # the t/s cell is 20 columns wide (llama-bench pads by bytes and widens it by one for the 2-byte ±)
    assert all(len(line.split("|")[7]) == 22 for line in lines[2:5])
    assert lines[5:] == ["", "build: llamapy-%s (0)" % llamapy.__version__, ""]
    assert backend.startswith("CPU")


def test_csv_fields_and_values(smollm2, backend):
    r = run_bench("-m", smollm2, *TINY, "-o", "csv")
    assert r.returncode == 0, r.stderr.decode()
    text = r.stdout.decode()
    assert text.split("\n")[0] == ",".join(FIELDS)
    assert all(line.startswith('"') for line in text.strip().split("\n")[1:])     # every value quoted
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(row["n_prompt"], row["n_gen"]) for row in rows] == [("8", "0"), ("0", "2")]
    for row in rows:
        assert row["backends"] == backend and row["model_filename"] == smollm2
        assert row["model_type"] == "llama 256M Q4_1"
        assert (row["model_size"], row["model_n_params"]) == ("96576768", "134515008")   # llama.cpp's numbers
        assert (row["n_batch"], row["n_ubatch"], row["n_threads"], row["type_k"]) == ("2048", "512", "1", "f16")
        assert row["cpu_strict"] == "0" and row["repack"] == "1" and row["flash_attn"] == "-1"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["test_time"])
        assert re.fullmatch(r"\d+\.\d{6}", row["avg_ts"]) and float(row["avg_ts"]) > 0
        assert int(row["avg_ns"]) > 0


def test_json_and_jsonl(smollm2):
    r = run_bench("-m", smollm2, *TINY, "-o", "json")
    assert r.returncode == 0, r.stderr.decode()
    text = r.stdout.decode()
    assert text.startswith("[\n  {\n") and text.endswith("\n  }\n]\n")
    tests = json.loads(text)
    assert len(tests) == 2
    for t in tests:
        assert list(t)[:len(FIELDS)] == FIELDS and list(t)[len(FIELDS):] == ["samples_ns", "samples_ts"]
        assert t["cpu_strict"] is False and t["repack"] is True and isinstance(t["n_threads"], int)
        assert isinstance(t["avg_ts"], float) and isinstance(t["model_type"], str)
        assert len(t["samples_ns"]) == 2 and len(t["samples_ts"]) == 2
        n = t["n_prompt"] + t["n_gen"]
        for ns, ts in zip(t["samples_ns"], t["samples_ts"]):
            assert ts == pytest.approx(1e9 * n / ns, rel=1e-5)                 # 6 significant digits
        assert t["avg_ns"] == sum(t["samples_ns"]) // 2
        assert t["avg_ts"] == pytest.approx(sum(t["samples_ts"]) / 2, rel=1e-5)

    r = run_bench("-m", smollm2, *TINY, "-o", "jsonl")
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().strip().split("\n")
    assert len(lines) == 2
    for line in lines:
        t = json.loads(line)
        assert list(t)[-2:] == ["samples_ns", "samples_ts"] and '],"samples_ts": [' in line


def test_sql_loads_into_sqlite(smollm2):
    r = run_bench("-m", smollm2, *TINY, "-o", "sql")
    assert r.returncode == 0, r.stderr.decode()
    db = sqlite3.connect(":memory:")
    db.executescript(r.stdout.decode())
    rows = db.execute("SELECT n_prompt, n_gen, model_type, avg_ts FROM llama_bench").fetchall()
    assert [(a, b, c) for a, b, c, _ in rows] == [(8, 0, "llama 256M Q4_1"), (0, 2, "llama 256M Q4_1")]
    assert all(ts > 0 for *_, ts in rows)


def test_several_models_threads_ranges_and_stderr_copy(smollm2):
    gemma = str(model_path("gemma3"))
    r = run_bench("-m", f"{smollm2},{gemma}", "-p", "4-8*2", "-n", "0", "-r", "1", "-t", "1,2", "-o", "jsonl",
                  "-oe", "csv", "--progress")
    assert r.returncode == 0, r.stderr.decode()
    tests = [json.loads(line) for line in r.stdout.decode().strip().split("\n")]
    got = [(t["model_type"], t["n_threads"], t["n_prompt"]) for t in tests]
    assert got == [("llama 256M Q4_1", 1, 4), ("llama 256M Q4_1", 1, 8), ("llama 256M Q4_1", 2, 4),
                   ("llama 256M Q4_1", 2, 8), ("gemma3 270M Q4_K - Medium", 1, 4),
                   ("gemma3 270M Q4_K - Medium", 1, 8), ("gemma3 270M Q4_K - Medium", 2, 4),
                   ("gemma3 270M Q4_K - Medium", 2, 8)]
    assert tests[4]["model_size"] == 246587904 and tests[4]["model_n_params"] == 268098176
    err = r.stderr.decode()
    assert "llamapy-bench: benchmark 1/8: starting" in err and "benchmark 8/8: prompt run 1/1" in err
    csv_rows = list(csv.DictReader(io.StringIO("\n".join(l for l in err.split("\n") if not l.startswith("llamapy-")))))
    assert len(csv_rows) == 8


def test_markdown_shows_changed_parameters(smollm2):
    r = run_bench("-m", smollm2, "-p", "8", "-n", "0", "-r", "1", "-t", "1", "-b", "4", "-ub", "4,8")
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().split("\n")
    assert "| threads | n_batch | n_ubatch |" in lines[0]
    assert [line.split("|")[7].strip() for line in lines[2:4]] == ["4", "8"]


def test_kv_cache_types(smollm2):
    r = run_bench("-m", smollm2, "-p", "8", "-n", "0", "-r", "1", "-t", "1", "-ctk", "f16,q8_0", "-ctv", "f32",
                  "-o", "md")
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stdout.decode().split("\n")
    assert "| threads | type_k | type_v |" in lines[0]
    assert [[c.strip() for c in line.split("|")[6:8]] for line in lines[2:4]] == [["f16", "f32"], ["q8_0", "f32"]]
    err = run_bench("-m", smollm2, "-p", "8", "-n", "0", "-r", "1", "-ctv", "q8_0").stderr.decode()
    assert err.startswith("error: ") and "flash attention" in err and err.strip().count("\n") == 0, err


def test_errors_are_one_line(smollm2, tmp_path):
    def one_line(r, needle):
        err = r.stderr.decode()
        assert r.returncode != 0 and err.startswith("error: ") and err.strip().count("\n") == 0, err
        assert needle in err and "Traceback" not in err, err

    one_line(run_bench("-m", smollm2, "-o", "xml"), "xml")
    one_line(run_bench("-m", smollm2, "-r", "0"), "-r")
    one_line(run_bench("-m", smollm2, "-p", "abc"), "-p")
    one_line(run_bench("-m", smollm2, "-p", "8-16*1"), "-p")
    one_line(run_bench("-m", smollm2, "-pg", "512"), "-pg")
    one_line(run_bench("-m", smollm2, "-t", "0"), "-t")
    one_line(run_bench("-m", smollm2, "-ctk", "q9_9"), "q9_9")
    one_line(run_bench("-m", smollm2, "-p", "0", "-n", "0"), "nothing to run")
    one_line(run_bench("-m", str(tmp_path / "missing.gguf")), "failed to load model")
    one_line(run_bench("-m", smollm2, "--bogus"), "bogus")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model")
    one_line(run_bench("-m", str(bad), *TINY), "bad.gguf")


def test_int_ranges_like_llama_bench():
    assert parse_int_range("512") == [512]
    assert parse_int_range("1,2,4") == [1, 2, 4]
    assert parse_int_range("1-4") == [1, 2, 3, 4]
    assert parse_int_range("1-8+3") == [1, 4, 7]
    assert parse_int_range("128-1024*2") == [128, 256, 512, 1024]
    for bad in ("", "a", "1-", "4-8*1", "-1", "1,,2"):
        with pytest.raises(ValueError):
            parse_int_range(bad)


def test_statistics_are_llama_bench_s():
    """avg_ts is the mean of per-sample t/s (not tokens / mean time); the std is the (n-1) sample std;
    avg_ns / stddev_ns are truncating integer arithmetic."""
    r = BenchResult(BenchTest("m", 100, 0), None, "", samples_ns=[100_000_000, 200_000_000, 400_000_000])
    assert r.samples_ts == [1000.0, 500.0, 250.0]
    assert r.avg_ts == pytest.approx(1750 / 3)
    assert r.stdev_ts == pytest.approx(381.8813079129867)
    assert (r.avg_ns, r.stdev_ns) == (233333333, 152752523)
    # seconds-long samples overflow llama-bench's uint64 sum of squares; the wrapped result is kept
    r = BenchResult(BenchTest("m", 100, 0), None, "", samples_ns=[1_000_000_000, 2_000_000_000, 4_000_000_000])
    assert (r.avg_ns, r.stdev_ns) == (2333333333, 3399515461)
    assert BenchResult(BenchTest("m", 0, 1), None, "", samples_ns=[5]).stdev_ts == 0.0
    assert BenchTest("m", 512, 128, n_depth=256).label == "pp512+tg128 @ d256"


def test_size_labels_follow_llama_cpp_tables():
    assert size_label("llama", 30, 576, 9, 3, 49152) == "256M"           # SmolLM2-135M, as llama.cpp names it
    assert size_label("gemma3", 18, 640, 4, 1, 262144) == "270M"
    assert size_label("llama", 32, 4096, 32, 8, 128256) == "8B"
    assert size_label("qwen2", 24, 896, 14, 2, 151936) == "1B"
    assert size_label("llama", 7, 64, 4, 4, 100) == "?B"
