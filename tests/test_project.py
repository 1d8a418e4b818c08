"""The repository as a Hugging Face Space and as a project a newcomer sets up from the README."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pinned(requirements: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / requirements).read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line.strip())
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_readme_is_a_valid_space_card():
    from huggingface_hub import SpaceCard

    card = SpaceCard.load(ROOT / "README.md")
    data = card.data
    assert data.sdk == "gradio"
    assert data.sdk_version == pinned("requirements.txt")["gradio"]
    assert data.app_file == "app.py" and (ROOT / data.app_file).is_file()
    assert data.python_version and data.license == "apache-2.0" and data.short_description
    assert len(data.short_description) <= 60  # the Hub's limit
    assert "sentence-transformers/all-MiniLM-L6-v2" in data.models
    assert data.tags


def test_runtime_requirements_are_pinned_and_hold_no_test_tools():
    runtime = pinned("requirements.txt")
    assert set(runtime) == {"torch", "gradio", "huggingface-hub", "safetensors", "tokenizers", "matplotlib", "numpy"}
    assert runtime["torch"] == "2.13.0"  # a CPU build of it installs here without pulling CUDA
    dev = (ROOT / "requirements-dev.txt").read_text()
    assert "-r requirements.txt" in dev
    for tool in ("pytest", "transformers", "sentence-transformers", "gradio-client", "playwright"):
        assert tool in pinned("requirements-dev.txt")


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    test_command = next(line for block in commands for line in block.splitlines() if "pytest" in line)
    ci = (ROOT / ".ci" / "run").read_text()
    core = test_command.split("&& ", 2)[-1]  # after creating and activating the environment
    assert core in ci, (core, ci)
