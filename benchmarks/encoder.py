"""Speed and memory of our encoder against the reference implementations, run by hand (not a test).

    python benchmarks/encoder.py [--repeats N] [--lengths 16,128,512] [--json out.json]
                                 [--threads N] [--quiet-wait SECONDS] [--no-memory]

On the bundled all-MiniLM-L6-v2, batch 1, float32, CPU, one thread count for everyone, it compares
  * ``model.run(text)`` (tokenization + forward + every step recorded) with the reference for "give me
    everything": transformers' tokenizer + ``BertModel`` (eager attention, output_attentions=True,
    output_hidden_states=True);
  * ``model.encoder(input_ids, token_type_ids)`` (no record, fused attention) with ``BertModel`` (sdpa
    attention, no extra outputs), both on the same pre-made id tensors;
  * the arithmetic floor: the forward pass's matmul FLOPs over this machine's measured float32 matmul rate;
  * ``model.embed`` on 64 texts with ``SentenceTransformer.encode`` (tokens per second);
  * the peak memory of each path, measured in a fresh subprocess per contender.
Contenders are interleaved round-robin (every repetition runs each once, in a fresh random order) so that
machine noise hits all alike; medians are reported with ratios ours / reference.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# The references must never reach the network; set before transformers / huggingface_hub are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# Both sides tokenize with the same Rust library; keep it single-threaded so it never competes with torch.
os.environ["TOKENIZERS_PARALLELISM"] = "false"

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import transformer  # noqa: E402

WEIGHTS = str(ROOT / "weights" / "all-MiniLM-L6-v2")
EMBED_TEXTS, EMBED_BATCH = 64, 32
TARGETS = {"run": 0.8, "encoder": 1.0}  # ours / reference must be at most this; embed: ours >= reference

# Plain prose to cut inputs from (varied words, so WordPiece splits some of them).
PROSE = (
    "An encoder reads a whole sentence at once. Every token first becomes a vector: a row of the token "
    "table, plus a vector for its position and one for its segment. Then each layer lets every token look "
    "at every other token through several attention heads, mixes what it found with a small feed-forward "
    "network, and normalises the result. Residual connections carry the original signal past each "
    "sublayer, so later layers refine rather than replace it. After six layers the vectors of a sentence "
    "are averaged into one embedding; similar sentences end up close together, which is what semantic "
    "search, clustering and deduplication rely on. Unusual words such as photosynthesis, Kilimanjaro or "
    "thermodynamics are split into pieces that the vocabulary does know."
).split()


# ----------------------------------------------------------------------------------------------- inputs


def count_tokens(model: transformer.Model, text: str) -> int:
    """Tokens of ``text`` with [CLS] and [SEP], untruncated (model.tokenize would stop counting at 512)."""
    return len(model.tokenizer.encode(text, max_length=1_000_000).input_ids)


def text_of_length(model: transformer.Model, n_tokens: int) -> str:
    """Prose that tokenizes to exactly ``n_tokens`` tokens, [CLS] and [SEP] included."""
    words: list[str] = []
    while count_tokens(model, " ".join(words + [PROSE[len(words) % len(PROSE)]])) <= n_tokens:
        words.append(PROSE[len(words) % len(PROSE)])
    # A word may be several tokens; fill the gap with "the", which is always one token.
    while count_tokens(model, " ".join(words)) < n_tokens:
        words.append("the")
    text = " ".join(words)
    if count_tokens(model, text) != n_tokens or model.tokenize(text).truncated:
        raise SystemExit(f"could not build a text of exactly {n_tokens} tokens")
    return text


def embed_texts(count: int) -> list[str]:
    """``count`` texts of 10 to 60 words, cut from the prose at random (fixed seed) places."""
    chooser = random.Random(0)
    texts = []
    for _ in range(count):
        length, start = chooser.randint(10, 60), chooser.randrange(len(PROSE))
        texts.append(" ".join(PROSE[(start + i) % len(PROSE)] for i in range(length)))
    return texts


# ------------------------------------------------------------------------------------------ contenders


def load_references(kinds: set[str]) -> dict[str, object]:
    """The reference implementations, loaded from the bundled folder only (offline)."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    loaded: dict[str, object] = {}
    if kinds & {"eager", "sdpa", "tokenizer"}:
        loaded["tokenizer"] = transformers.AutoTokenizer.from_pretrained(WEIGHTS)
    for kind in {"eager", "sdpa"} & kinds:
        loaded[kind] = transformers.BertModel.from_pretrained(WEIGHTS, attn_implementation=kind).eval()
    if "sentence" in kinds:
        from sentence_transformers import SentenceTransformer

        loaded["sentence"] = SentenceTransformer(WEIGHTS, device="cpu")
    return loaded


def length_contenders(model: transformer.Model, refs: dict, text: str) -> dict[str, Callable[[], object]]:
    """The four batch-1 paths at one length; each returns its outputs (kept alive until timed)."""
    tokenizer, eager, sdpa = refs["tokenizer"], refs.get("eager"), refs.get("sdpa")  # absent in a memory probe
    encoded = tokenizer(text, return_tensors="pt")
    input_ids, token_type_ids = encoded["input_ids"], encoded["token_type_ids"]  # (1, T) each

    def ours_run():
        return model.run(text)  # run() tokenizes and is decorated with inference_mode itself

    def reference_everything():
        with torch.inference_mode():
            enc = tokenizer(text, return_tensors="pt")
            return eager(**enc, output_attentions=True, output_hidden_states=True)

    def ours_encoder():
        with torch.inference_mode():
            return model.encoder(input_ids, token_type_ids)

    def reference_sdpa():
        with torch.inference_mode():
            return sdpa(input_ids=input_ids, token_type_ids=token_type_ids)

    return {"run": ours_run, "hf_eager_all": reference_everything, "encoder": ours_encoder, "hf_sdpa": reference_sdpa}


def embed_contenders(model: transformer.Model, refs: dict, texts: list[str]) -> dict[str, Callable[[], object]]:
    sentence = refs.get("sentence")  # absent in a memory probe of ours

    def ours_embed():
        return model.embed(texts, batch_size=EMBED_BATCH)

    def reference_encode():
        with torch.inference_mode():
            return sentence.encode(texts, batch_size=EMBED_BATCH, convert_to_tensor=True, show_progress_bar=False)

    return {"embed": ours_embed, "st_encode": reference_encode}


def parity(model: transformer.Model, refs: dict, text: str) -> dict[str, float]:
    """Largest absolute differences, so the table compares computations that agree."""
    run = model.run(text)
    everything = length_contenders(model, refs, text)
    eager = everything["hf_eager_all"]()
    fast, reference_fast = everything["encoder"](), everything["hf_sdpa"]()
    return {
        "run_vs_eager_hidden": max((a - b[0]).abs().max().item() for a, b in zip(run.hidden_states, eager.hidden_states, strict=True)),
        "run_vs_eager_attentions": max((a - b[0]).abs().max().item() for a, b in zip(run.attentions, eager.attentions, strict=True)),
        "encoder_vs_sdpa": (fast - reference_fast.last_hidden_state).abs().max().item(),
    }


# ------------------------------------------------------------------------------------------------ timing


@dataclass
class Timings:
    seconds: dict[str, list[float]]  # contender -> seconds per call
    faults: dict[str, list[int]]  # contender -> minor page faults per call (fresh memory the kernel had to map)
    others_cpus: float  # CPUs that other processes kept busy meanwhile, on average: the machine's noise


def _busy_cpu_seconds() -> tuple[float, float]:
    """(all processes, this process) CPU seconds so far."""
    import psutil

    every = psutil.cpu_times()
    own = psutil.Process().cpu_times()
    return every.user + every.nice + every.system, own.user + own.system


def interleaved(contenders: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> Timings:
    """Each repetition runs every contender once (round-robin), so machine noise hits all alike."""
    names = list(contenders)
    for _ in range(warmup):
        for name in names:
            contenders[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    faults: dict[str, list[int]] = {name: [] for name in names}
    busy_start, own_start, wall_start = *_busy_cpu_seconds(), time.perf_counter()
    order = random.Random(0)
    for _ in range(repeats):
        gc.collect()  # a collection inside a timed call would charge one contender for everyone's garbage
        # A fresh order each repetition: a fixed one would always run a contender right after the same other
        # one, whose weights and buffers it would find (or not find) in the caches.
        for name in order.sample(names, len(names)):
            faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start = time.perf_counter()
            result = contenders[name]()
            seconds[name].append(time.perf_counter() - start)
            faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before)
            del result
    busy_end, own_end = _busy_cpu_seconds()
    others = max(0.0, (busy_end - busy_start) - (own_end - own_start)) / (time.perf_counter() - wall_start)
    return Timings(seconds, faults, others)


def wait_for_quiet(limit_s: float) -> None:
    """Wait (at most ``limit_s``) until other processes use under a fifth of a CPU, so timings mean something."""
    if limit_s <= 0:
        return
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        busy, own = _busy_cpu_seconds()
        time.sleep(2)
        busy2, own2 = _busy_cpu_seconds()
        if (busy2 - busy) - (own2 - own) < 0.4:
            return
    print(f"  (the machine stayed busy for {limit_s:.0f} s; timing anyway)")


def forward_flops(config: transformer.EncoderConfig, n_tokens: int) -> int:
    """Matmul FLOPs of one forward pass (2*m*n*k per product); norms, softmax and GELU are left out."""
    T, d, d_ff, L = n_tokens, config.d_model, config.d_ff, config.n_layers
    qkv = 2 * T * d * (3 * d)
    scores = 2 * T * T * d  # H heads of (T, d_head) x (d_head, T)
    context = 2 * T * T * d  # H heads of (T, T) x (T, d_head)
    out = 2 * T * d * d
    ffn = 2 * T * d * d_ff * 2  # up and down
    return L * (qkv + scores + context + out + ffn)


def matmul_rates(n_tokens: int, d: int, d_ff: int, repeats: int) -> dict[str, float]:
    """Measured float32 FLOP/s at the forward pass's largest shape, (T, d) x (d, d_ff), per matmul library.

    "torch.mm" is what nn.Linear uses (MKL's sgemm in the x86 wheels); "oneDNN" is PyTorch's other CPU
    matmul library, reached through the op that torch.compile's CPU backend uses for linears. On some
    CPUs (MKL on AMD) the two differ by 2x, so the floor is taken from the faster one.
    """
    a, b = torch.randn(n_tokens, d), torch.randn(d, d_ff)
    kernels = {"torch.mm": lambda: torch.mm(a, b)}
    try:  # private ops of the oneDNN build; absent or failing elsewhere, the floor comes from torch.mm alone
        onednn = torch.ops.mkldnn._linear_pointwise
        with torch.inference_mode():
            weight = torch.ops.mkldnn._reorder_linear_weight(b.t().contiguous(), n_tokens)  # (d_ff, d), reordered
            onednn(a, weight, None, "none", [], "")
        kernels["oneDNN"] = lambda: onednn(a, weight, None, "none", [], "")
    except (AttributeError, RuntimeError):
        pass
    flops = 2 * n_tokens * d * d_ff
    inner = max(1, 1_000_000_000 // flops)  # ~1 GFLOP per sample: long enough to time
    rates = {}
    with torch.inference_mode():
        for name, multiply in kernels.items():
            for _ in range(3):
                multiply()
            samples = []
            for _ in range(repeats):
                start = time.perf_counter()
                for _ in range(inner):
                    multiply()
                samples.append((time.perf_counter() - start) / inner)
            rates[name] = flops / statistics.median(samples)
    return rates


# ------------------------------------------------------------------------------------------------ memory

PATHS = ("run", "hf_eager_all", "encoder", "hf_sdpa")
EMBED_PATHS = ("embed", "st_encode")


def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def result_bytes(result: object, weights: set[int]) -> int:
    """Bytes of tensor storage a call's result keeps alive (views of one storage counted once).

    ``weights``: storage addresses of the model's parameters; a step that is a view of a weight (the
    position table) costs no memory of its own.
    """
    tensors: list[torch.Tensor] = []

    def collect(value: object) -> None:
        if isinstance(value, torch.Tensor):
            tensors.append(value)
        elif isinstance(value, (tuple, list)):
            for item in value:
                collect(item)
        elif isinstance(value, dict):  # transformers' ModelOutput is an ordered dict
            for item in value.values():
                collect(item)

    if isinstance(result, transformer.Run):
        collect([step.tensor for step in result.steps] + [result.input_ids, result.token_type_ids])
    else:
        collect(result)
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(size for address, size in storages.items() if address not in weights)


def memory_probe(contender: str, lengths: list[int]) -> None:
    """(Run in a fresh subprocess.) Peak resident memory of one contender per length, printed as JSON.

    After loading and two warm-up calls, the kernel's peak-RSS mark (VmHWM) is reset to the current RSS
    (/proc/self/clear_refs); one more call runs with its result kept alive, and the peak above the baseline
    is what that call needed: activations, temporaries, recorded steps and outputs. The parent sets a low,
    fixed glibc mmap threshold so freed tensors go back to the OS at once and warm-up memory is not
    silently reused: the figure is then close to the largest total of live tensors during the call.
    """
    model = transformer.from_pretrained()
    kinds = {"run": {"tokenizer"}, "hf_eager_all": {"tokenizer", "eager"}, "encoder": {"tokenizer"},
             "hf_sdpa": {"tokenizer", "sdpa"}, "embed": set(), "st_encode": {"sentence"}}[contender]
    refs = load_references(kinds) if kinds else {}
    result = {}
    for n_tokens in ([0] if contender in EMBED_PATHS else lengths):
        if n_tokens:
            call = length_contenders(model, refs, text_of_length(model, n_tokens))[contender]
        else:
            call = embed_contenders(model, refs, embed_texts(EMBED_TEXTS))[contender]
        call(), call()
        gc.collect()
        baseline = _status_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        kept = call()
        result[str(n_tokens or "embed")] = (_status_kib("VmHWM") - baseline) / 1024
        del kept, call
        gc.collect()
    print(json.dumps(result))


def measure_memory(contenders: tuple[str, ...], lengths: list[int], threads: int) -> dict[str, dict[str, float]]:
    """Peak MiB per contender and length, each contender in its own fresh process."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="8192", MALLOC_TRIM_THRESHOLD_="8192")
    found = {}
    for contender in contenders:
        command = [sys.executable, __file__, "--memory-probe", contender, "--threads", str(threads),
                   "--lengths", ",".join(map(str, lengths))]
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode:
            raise SystemExit(f"memory probe {contender} failed:\n{done.stderr[-2000:]}")
        found[contender] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


# ----------------------------------------------------------------------------------------------- report


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1e3


def spread(samples: list[float]) -> float:
    """Interquartile range over the median: how noisy the machine was for this contender."""
    q1, _, q3 = statistics.quantiles(samples, n=4)
    return (q3 - q1) / statistics.median(samples)


def verdict(ratio: float, target: float, at_most: bool = True) -> str:
    return "met" if (ratio <= target if at_most else ratio >= target) else "NOT met"


def bench_length(model: transformer.Model, refs: dict, n_tokens: int, repeats: int) -> dict:
    """Timings, floor, parity and result sizes of the four batch-1 paths at one length."""
    text = text_of_length(model, n_tokens)
    contenders = length_contenders(model, refs, text)
    agree = parity(model, refs, text)
    weights = {p.untyped_storage().data_ptr() for p in model.encoder.parameters()}
    sizes = {name: result_bytes(call(), weights) for name, call in contenders.items()}
    timings = interleaved(contenders, repeats)
    config = model.config
    flops = forward_flops(config, n_tokens)
    rates = matmul_rates(n_tokens, config.d_model, config.d_ff, repeats=7)
    return {
        "text": text, "repeats": repeats, "flops": flops, "matmul_flops_per_s": rates,
        "floor_ms": {name: flops / rate * 1e3 for name, rate in rates.items()},
        "median_ms": {name: median_ms(s) for name, s in timings.seconds.items()},
        "iqr_over_median": {name: spread(s) for name, s in timings.seconds.items()},
        "median_page_faults": {name: statistics.median(f) for name, f in timings.faults.items()},
        "result_mib": {name: size / 2**20 for name, size in sizes.items()},
        "others_cpus": timings.others_cpus, "max_abs_difference": agree, "samples_s": timings.seconds,
    }


def bench_embed(model: transformer.Model, refs: dict, repeats: int) -> dict:
    texts = embed_texts(EMBED_TEXTS)
    limit = min(model.pooling.max_length or model.max_tokens, model.max_tokens)
    n_tokens = sum(len(model.tokenizer.encode(text, max_length=limit).input_ids) for text in texts)
    contenders = embed_contenders(model, refs, texts)
    difference = (contenders["embed"]() - contenders["st_encode"]()).abs().max().item()
    timings = interleaved(contenders, repeats)
    return {
        "texts": len(texts), "tokens": n_tokens, "batch_size": EMBED_BATCH, "max_abs_difference": difference,
        "tokens_per_s": {name: n_tokens / statistics.median(s) for name, s in timings.seconds.items()},
        "others_cpus": timings.others_cpus, "samples_s": timings.seconds,
    }


def print_table(lengths: dict[int, dict]) -> None:
    print("\nMedian ms per call; ratio = ours / reference")
    print(f"{'T':>4} | {'run':>7} {'hf eager':>8} {'ratio':>5} | {'encoder':>7} {'hf sdpa':>7} {'ratio':>5} | {'others':>6}")
    for n_tokens, found in lengths.items():
        med = found["median_ms"]
        print(f"{n_tokens:>4} | {med['run']:>7.2f} {med['hf_eager_all']:>8.2f} {med['run'] / med['hf_eager_all']:>5.2f} | "
              f"{med['encoder']:>7.2f} {med['hf_sdpa']:>7.2f} {med['encoder'] / med['hf_sdpa']:>5.2f} | "
              f"{found['others_cpus']:>6.2f}")
    print("others = CPUs that other processes kept busy meanwhile (noise; the machine has "
          f"{os.cpu_count()}).")
    print("\nThe arithmetic floor: matmul FLOPs / measured float32 matmul rate at (T, d) x (d, d_ff), per library;"
          "\nthe last columns are floor (fastest library) / median, i.e. how close each path is to the limit.")
    names = list(next(iter(lengths.values()))["matmul_flops_per_s"])
    print(f"{'T':>4} | {'GFLOP':>5} | " + " ".join(f"{name + ' GFLOP/s':>15} {'floor ms':>8}" for name in names)
          + " | " + " ".join(f"{name:>12}" for name in PATHS))
    for n_tokens, found in lengths.items():
        floor = min(found["floor_ms"].values())
        print(f"{n_tokens:>4} | {found['flops'] / 1e9:>5.2f} | "
              + " ".join(f"{found['matmul_flops_per_s'][name] / 1e9:>15.0f} {found['floor_ms'][name]:>8.2f}" for name in names)
              + " | " + " ".join(f"{floor / found['median_ms'][name]:>12.0%}" for name in PATHS))
    print("\nMinor page faults per call (median: fresh memory the kernel had to map) and MiB the result keeps alive:")
    for n_tokens, found in lengths.items():
        print(f"{n_tokens:>4} | " + "  ".join(f"{name} {found['median_page_faults'][name]:.0f} faults, "
                                              f"{found['result_mib'][name]:.1f} MiB" for name in PATHS))


def print_verdicts(lengths: dict[int, dict], embed: dict) -> None:
    print("\nTargets:")
    for n_tokens, found in lengths.items():
        med = found["median_ms"]
        for ours, reference in (("run", "hf_eager_all"), ("encoder", "hf_sdpa")):
            ratio = med[ours] / med[reference]
            print(f"  T={n_tokens} {ours}: {ratio:.2f}x {reference} (target <= {TARGETS[ours]}x) {verdict(ratio, TARGETS[ours])}")
    rates = embed["tokens_per_s"]
    ratio = rates["embed"] / rates["st_encode"]
    print(f"  embed: {ratio:.2f}x sentence-transformers' tokens/s (target >= 1.0x) {verdict(ratio, 1.0, at_most=False)}")


def print_memory(memory: dict[str, dict[str, float]], lengths: list[int]) -> None:
    print("\nPeak RSS above the warmed-up baseline during one call, result kept alive (MiB; a fresh process each):")
    print(f"{'T':>6} " + " ".join(f"{name:>12}" for name in PATHS))
    for n_tokens in lengths:
        print(f"{n_tokens:>6} " + " ".join(f"{memory[name][str(n_tokens)]:>12.1f}" for name in PATHS))
    print(f"{'embed':>6} ours {memory['embed']['embed']:.1f}, sentence-transformers {memory['st_encode']['embed']:.1f}")


def cpu_name() -> str:
    """The processor's model name: which BLAS is fast depends on it (MKL picks slow paths on AMD)."""
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
    except OSError:
        found = None
    return found.group(1).strip() if found else platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions (default 100/40/20 by length, 15 for embed)")
    parser.add_argument("--lengths", default="16,128,512", help="token counts, comma separated")
    parser.add_argument("--json", type=Path, default=None, help="also write every sample to this file")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for every contender (default: torch's)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-contender memory subprocesses")
    parser.add_argument("--quiet-wait", type=float, default=0, help="wait up to this many seconds per section for "
                        "other processes to go quiet (default 0)")
    parser.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    lengths = [int(n) for n in args.lengths.split(",") if n.strip()]
    if args.memory_probe:
        memory_probe(args.memory_probe, lengths)
        return

    model = transformer.from_pretrained()
    refs = load_references({"tokenizer", "eager", "sdpa", "sentence"})
    print(f"torch {torch.__version__}, torch.get_num_threads() = {threads} for every contender, {os.cpu_count()} CPUs "
          f"({cpu_name()}), float32, batch 1, inference_mode")
    print("run and hf_eager_all include tokenization; encoder and hf_sdpa take the same pre-made id tensors.")
    report: dict = {"torch": torch.__version__, "threads": threads, "cpus": os.cpu_count(), "cpu": cpu_name(), "lengths": {}}
    for n_tokens in lengths:
        wait_for_quiet(args.quiet_wait)
        repeats = args.repeats or (100 if n_tokens <= 32 else 40 if n_tokens <= 192 else 20)
        found = report["lengths"][n_tokens] = bench_length(model, refs, n_tokens, repeats)
        print(f"T={n_tokens}: {repeats} repetitions; max |ours - reference| "
              + ", ".join(f"{name} {value:.1e}" for name, value in found["max_abs_difference"].items()))
    print_table(report["lengths"])

    wait_for_quiet(args.quiet_wait)
    embed = report["embed"] = bench_embed(model, refs, args.repeats or 15)
    rates = embed["tokens_per_s"]
    print(f"\nembed: {embed['texts']} texts, {embed['tokens']} tokens, batch {EMBED_BATCH}; max |ours - reference| "
          f"{embed['max_abs_difference']:.1e}; others {embed['others_cpus']:.2f}")
    print(f"  ours {rates['embed']:,.0f} tokens/s, sentence-transformers {rates['st_encode']:,.0f} tokens/s, "
          f"ratio {rates['embed'] / rates['st_encode']:.2f}")
    print_verdicts(report["lengths"], embed)

    if not args.no_memory:
        del refs
        report["peak_memory_mib"] = measure_memory(PATHS + EMBED_PATHS, lengths, threads)
        print_memory(report["peak_memory_mib"], lengths)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
