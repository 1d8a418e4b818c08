"""A Transformer encoder written from scratch, loading real BERT-family checkpoints, recording every step.

    import transformer
    model = transformer.from_pretrained()          # the bundled all-MiniLM-L6-v2
    run = model.run("The cat sat on the mat.")
    run.hidden_states, run.attentions, run.steps
"""

from .config import EncoderConfig
from .encoder import Encoder
from .errors import TransformerError
from .hub import Source
from .loading import from_pretrained
from .mlm import FillMask, LogitLens, MaskPrediction, Prediction
from .model import Model, Pooling, Run
from .positional import sinusoidal_table
from .steps import STEP_DOCS, Recorder, Step

__all__ = [
    "STEP_DOCS",
    "Encoder",
    "EncoderConfig",
    "FillMask",
    "LogitLens",
    "MaskPrediction",
    "Model",
    "Pooling",
    "Prediction",
    "Recorder",
    "Run",
    "Source",
    "Step",
    "TransformerError",
    "from_pretrained",
    "sinusoidal_table",
]
