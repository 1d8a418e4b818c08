"""Command line: ``python -m transformer "some text"`` prints the tokens and a per-layer summary.

    python -m transformer "The cat sat on the mat." "A second text" --model google-bert/bert-base-uncased
    python -m transformer "text" --json            # machine-readable
    python -m transformer "text" --save run.safetensors   # every step's tensor, named by step
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import torch

from .errors import TransformerError
from .export import save_run
from .loading import from_pretrained
from .model import Run


def layer_summary(run: Run) -> list[dict]:
    """Per layer: output norm, the change it made to the residual stream, and its sharpest attention head."""
    rows = []
    for layer, (before, after, pattern) in enumerate(zip(run.hidden_states, run.hidden_states[1:], run.attentions)):
        # Mean entropy (in nats) of each head's attention rows: low means the head looks at few tokens.
        entropy = -(pattern * pattern.clamp_min(1e-12).log()).sum(-1).mean(-1)  # (H,)
        rows.append({
            "layer": layer,
            "mean_token_norm": round(after.norm(dim=-1).mean().item(), 4),
            "cosine_to_input": round(torch.nn.functional.cosine_similarity(before, after, dim=-1).mean().item(), 4),
            "sharpest_head": int(entropy.argmin()),
            "sharpest_head_entropy": round(entropy.min().item(), 4),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m transformer", description=__doc__.split("\n")[0])
    parser.add_argument("text", help="the text to encode")
    parser.add_argument("pair", nargs="?", default=None, help="an optional second text (sentence pair)")
    parser.add_argument("--model", default=None, help="a Hub repo id or a local folder (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument("--revision", default=None, help="Hub branch, tag or commit")
    parser.add_argument("--device", default=None, help="cpu (default) or cuda")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--save", metavar="FILE", help="write every step's tensor to a .safetensors file")
    args = parser.parse_args(argv)

    try:
        model = from_pretrained(args.model, revision=args.revision, device=args.device)
        run = model.run(args.text, args.pair).cpu()
    except TransformerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = layer_summary(run)
    if args.save:
        save_run(run, args.save, source=model.source.describe())
    if args.json:
        print(json.dumps({
            "source": model.source.describe(),
            "config": model.config.to_dict(),
            "tokens": list(run.tokens),
            "input_ids": run.input_ids.tolist(),
            "token_type_ids": run.token_type_ids.tolist(),
            "offsets": [list(span) for span in run.offsets],
            "truncated_tokens": run.tokenized.n_dropped,
            "steps": [{"name": s.name, "shape": list(s.shape), "axes": list(s.axes)} for s in run.steps],
            "layers": summary,
        }, indent=2, ensure_ascii=False))
        return 0
    cfg = model.config
    print(f"{model.source.describe()}: {cfg.n_layers} layers, {cfg.n_heads} heads, d_model {cfg.d_model}, "
          f"{model.n_parameters:,} parameters")
    print(f"{len(run.tokens)} tokens: " + " ".join(run.tokens))
    if run.truncated:
        print(f"(truncated: {run.tokenized.n_dropped} tokens beyond the model's maximum of {model.max_tokens} were dropped)")
    print(f"{'layer':>5}  {'mean |x|':>9}  {'cos(in,out)':>11}  sharpest head (entropy)")
    for row in summary:
        print(f"{row['layer']:>5}  {row['mean_token_norm']:>9.3f}  {row['cosine_to_input']:>11.3f}  "
              f"{row['sharpest_head']:>3} ({row['sharpest_head_entropy']:.2f} nats, uniform = {math.log(len(run.tokens)):.2f})")
    if args.save:
        print(f"wrote {len(run.steps)} steps to {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
