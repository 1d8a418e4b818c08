"""App latency, cold start and memory, measured through gradio_client against the real server.

    python benchmarks/app.py [--reps 5] [--json out.json]

- Every endpoint's median and 90th-percentile latency for a 20-token sentence and a 256-token paragraph.
  Each call uses a text not seen before (a numbered variant), so every call runs the encoder and draws
  its figure: the uncached case. The app's `echo` endpoint, which returns its input, is measured in the
  same loop as the baseline: the queue and API round trip alone.
- Cold start: process start to the first successful page load (HTTP 200 on /), for the app and for a bare
  Gradio app that imports torch, alternated, medians.
- The server's peak resident memory (VmHWM from /proc) after all of the above.
Prints one table; the numbers to compare are the ones beyond the echo baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SENTENCE = "Every quick brown fox jumps over the lazy dog while the cat watches from the window"
PARAGRAPH = (
    "Transformers read a whole sentence at once. Every token looks at every other token through attention, "
    "and each layer mixes what it finds into the token's vector with a small feed-forward network. "
) * 6
BARE_APP = "import torch\nimport gradio as gr\nwith gr.Blocks() as demo:\n    gr.Textbox()\ndemo.launch()\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(script: list[str], port: int) -> subprocess.Popen:
    env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="1")
    return subprocess.Popen([sys.executable, *script], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_page(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing answered on port {port}")


def cold_start(script: list[str]) -> float:
    port = free_port()
    began = time.perf_counter()
    process = start(script, port)
    try:
        wait_for_page(port)
        return time.perf_counter() - began
    finally:
        process.terminate()
        process.wait(timeout=30)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def endpoint_calls(text: str) -> dict[str, dict]:
    texts = dict(text_a=text, text_b="", model_id="", revision="")
    return {
        "echo": dict(text_a=text),
        "tokenize": texts,
        "input_composition": texts,
        "step (layer 2, scores)": dict(**texts, layer=2, step=3, head=-1),
        "attention_head": dict(**texts, layer=2, head=3),
        "attention_layer": dict(**texts, layer=2),
        "attention_flow": dict(**texts, layer=2, head=3),
        "attention_overview": texts,
        "head_summary": dict(**texts, layer=-1),
        "output": texts,
        "ablate_heads": dict(**texts, heads="1.*", top_k=5),
        "word_in_contexts": dict(text_a=text, text_b="Every token counts.", model_id="", revision="", word="every"),
        "export_run": texts,
        "positional": dict(width=128, length=64),
        "position_similarity": dict(model_id="", revision="", length=128),
        "model_weights": dict(model_id="", revision=""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="calls per endpoint and text (default 5)")
    parser.add_argument("--starts", type=int, default=3, help="cold starts of each app (default 3)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    from gradio_client import Client

    port = free_port()
    server = start(["app.py"], port)
    results: dict = {"latency": {}, "cold_start": {}, "reps": args.reps}
    try:
        wait_for_page(port)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        client.predict(model_id="", revision="", api_name="/load_model")
        for size, base_text in (("20 tokens", SENTENCE), ("256 tokens", PARAGRAPH)):
            timings: dict[str, list[float]] = {}
            for rep in range(args.reps):
                # A new text each repetition (uncached); endpoints interleaved so noise hits all alike.
                calls = endpoint_calls(f"{base_text} (variant {rep})")
                for name, kwargs in calls.items():
                    began = time.perf_counter()
                    client.predict(**kwargs, api_name="/" + name.split(" ")[0])
                    timings.setdefault(name, []).append(time.perf_counter() - began)
            echo = statistics.median(timings["echo"])
            results["latency"][size] = {
                name: {"median_s": statistics.median(values),
                       "p90_s": sorted(values)[max(0, round(0.9 * len(values)) - 1)],
                       "median_beyond_echo_s": statistics.median(values) - echo}
                for name, values in timings.items()
            }
        results["server_peak_rss_mb"] = peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)

    with tempfile.TemporaryDirectory() as folder:
        bare = Path(folder) / "bare_app.py"
        bare.write_text(BARE_APP)
        starts: dict[str, list[float]] = {"app.py": [], "bare Gradio + torch": []}
        for _ in range(args.starts):  # alternated
            starts["app.py"].append(cold_start(["app.py"]))
            starts["bare Gradio + torch"].append(cold_start([str(bare)]))
    results["cold_start"] = {name: statistics.median(values) for name, values in starts.items()}

    print(f"App latency through gradio_client, {args.reps} uncached calls per endpoint (seconds)")
    for size, table in results["latency"].items():
        print(f"\n{size}: {'endpoint':<24} {'median':>8} {'p90':>8} {'beyond echo':>12}")
        for name, row in table.items():
            print(f"{'':>{len(size) + 2}}{name:<24} {row['median_s']:8.3f} {row['p90_s']:8.3f} {row['median_beyond_echo_s']:12.3f}")
    app_start, bare_start = results["cold_start"]["app.py"], results["cold_start"]["bare Gradio + torch"]
    print(f"\nCold start to first page: app {app_start:.2f} s, bare Gradio + torch {bare_start:.2f} s, "
          f"difference {app_start - bare_start:+.2f} s (medians of {args.starts})")
    print(f"Server peak resident memory: {results['server_peak_rss_mb']:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
