"""Test-wide settings: no telemetry, no network beyond loopback, the Hub pointed nowhere real."""

import os

# huggingface_hub and gradio read these when first imported: set them before any test module imports them.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing real is ever reached
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def model():
    """The bundled default model, loaded once for the whole session."""
    import transformer

    return transformer.from_pretrained()
