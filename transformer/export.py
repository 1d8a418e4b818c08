"""Exports: a whole run as one safetensors file named by step, any tensor as CSV, figures as PNG or SVG."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

import torch
from safetensors.torch import save, save_file


def run_tensors(run) -> dict[str, torch.Tensor]:
    """Every step's tensor under its step name, contiguous and on the CPU (ready for safetensors)."""
    return {step.name: step.tensor.detach().cpu().contiguous() for step in run.steps}


def run_metadata(run, source: str = "") -> dict[str, str]:
    return {
        "tokens": json.dumps(list(run.tokens), ensure_ascii=False),
        "texts": json.dumps(list(run.texts), ensure_ascii=False),
        "source": source,
    }


def save_run(run, path: str, source: str = "") -> None:
    """Write every step of ``run`` to ``path`` (.safetensors); the metadata holds the tokens and texts."""
    save_file(run_tensors(run), path, metadata=run_metadata(run, source))


def run_to_bytes(run, source: str = "") -> bytes:
    return save(run_tensors(run), metadata=run_metadata(run, source))


def tensor_to_csv(tensor: torch.Tensor, axes: Sequence[str], tokens: Sequence[str] | None = None) -> str:
    """A tensor as CSV: one column per axis index and a value column (long format), tokens named where an
    axis runs over tokens (``token``, ``query`` or ``key``)."""
    if len(axes) != tensor.dim():
        raise ValueError(f"{len(axes)} axis names for a {tensor.dim()}-D tensor")
    values = tensor.detach().cpu().float()
    out = io.StringIO()
    writer = csv.writer(out)
    token_axes = [i for i, axis in enumerate(axes) if axis in ("token", "query", "key")]
    header = list(axes) + [f"{axes[i]}_text" for i in token_axes] + ["value"]
    writer.writerow(header)
    flat = values.reshape(-1).tolist()
    for position, index in enumerate(torch.cartesian_prod(*[torch.arange(n) for n in values.shape]).reshape(len(flat), -1).tolist()):
        labels = [tokens[index[i]] if tokens is not None else "" for i in token_axes]
        writer.writerow([*index, *labels, repr(flat[position])])
    return out.getvalue()


def figure_bytes(figure, fmt: str = "png", dpi: int = 100) -> bytes:
    """A matplotlib Figure rendered to PNG or SVG bytes."""
    if fmt not in ("png", "svg"):
        raise ValueError(f"format must be 'png' or 'svg', not {fmt!r}")
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, dpi=dpi)
    return buffer.getvalue()
