"""``python -m transformer``: tokens, JSON, the saved step file, and clean errors."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
from safetensors import safe_open


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "transformer", *args], capture_output=True, text=True, timeout=120)


def test_json_output_and_saved_steps(tmp_path, model):
    from transformers import AutoTokenizer

    saved = tmp_path / "run.safetensors"
    result = cli("The cat sat on the mat.", "A dog barked.", "--json", "--save", str(saved))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    expected = AutoTokenizer.from_pretrained("weights/all-MiniLM-L6-v2")("The cat sat on the mat.", "A dog barked.")
    assert report["input_ids"] == expected["input_ids"]
    assert report["token_type_ids"] == expected["token_type_ids"]
    assert len(report["layers"]) == 6 and report["config"]["n_heads"] == 12

    run = model.run("The cat sat on the mat.", "A dog barked.")
    with safe_open(saved, "pt") as handle:
        assert list(handle.keys()) == sorted(step.name for step in run.steps)
        for step in run.steps:
            assert torch.allclose(handle.get_tensor(step.name), step.tensor, atol=1e-6), step.name
        assert json.loads(handle.metadata()["tokens"]) == list(run.tokens)


def test_text_output_lists_tokens_and_layers():
    result = cli("Hello world")
    assert result.returncode == 0
    assert "[CLS] hello world [SEP]" in result.stdout
    assert sum(line.strip().startswith(str(i)) for i in range(6) for line in result.stdout.splitlines()) >= 6


def test_errors_are_one_line_without_traceback(tmp_path):
    result = cli("text", "--model", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: No such folder") and "Traceback" not in result.stderr
