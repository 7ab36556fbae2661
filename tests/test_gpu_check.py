"""benchmarks/gpu_check.py, the one-off check of a CUDA machine, runs end to end: on the CPU
with --quick here (the GPU run itself needs a CUDA machine)."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(SCRIPT.parent))  # its helpers in benchmarks/_common.py
    try:
        spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


def test_quick_cpu_run_writes_the_table(gpu_check, tmp_path, capsys):
    out = tmp_path / "deep" / "check.md"
    assert gpu_check.main(["--device", "cpu", "--quick", "--out", str(out)]) == 0
    text = out.read_text()
    assert text in capsys.readouterr().out  # printed as written
    assert f"torch {torch.__version__}" in text and "Machine: " in text
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]
    checks = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    assert [(c[0], c[1]) for c in checks] == [
        ("cpu vs cpu PSNR", "64² fast, 5 steps"),
        ("ms/step", "fast preset, 64²"), ("ms/step", "paper preset, 64²"),
        ("ensemble ms/step", "ensemble=1, fast, 64²"),
        ("ensemble ms/step", "ensemble=4, fast, 64²"),
        ("ensemble ms/step", "ensemble=16, fast, 64²"),
        ("autocast bfloat16", "bfloat16 autocast, 64² fast, 5 steps"),
        ("autocast float16", "float16 autocast, 64² fast, 5 steps")]
    agreement = checks[0]
    assert agreement[4].startswith("+0.00 dB vs cpu") and "agree within 0.3 dB: yes" in \
        agreement[5]
    for check in checks[1:6]:
        assert float(check[2]) > 0  # ms/step measured
    for check in checks[6:]:  # measured, or why not
        assert (float(check[2]) > 0 and "dB vs fp32" in check[4]) \
            or check[5].startswith("not supported: ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_it_says_how_to_check_the_script(gpu_check, tmp_path, capsys):
    out = tmp_path / "check.md"
    assert gpu_check.main(["--out", str(out)]) == 2
    assert "no CUDA device; run with --device cpu to check the script" in \
        capsys.readouterr().err
    assert not out.exists()


def test_an_unsupported_autocast_is_reported_not_raised(gpu_check, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("autocast for this dtype\nis not supported here")

    monkeypatch.setattr(gpu_check, "run_psnr", refuse)
    rows = gpu_check._autocast(None, None, "cpu", {"psnr_size": 64, "iterations": 5}, 20.0)
    assert [r["note"] for r in rows] == [
        "not supported: autocast for this dtype is not supported here"] * 2
