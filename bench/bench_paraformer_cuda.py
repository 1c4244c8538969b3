"""Paraformer-large on a CUDA GPU: FunASR's batch_size_s sweep against tingxie's budgeted batches.

    python bench/bench_paraformer_cuda.py --spans bench/data/spans-zh_long.json --repeat 6 --runs 2

The seeds' sweep, on a GPU: FunASR's AutoModel.generate with batch_size_s 60, 300 and 600 (its
batch_size_threshold_s left at 60), and tingxie with no hand tuning (its memory budget: a
share of the free GPU memory; fp32, fp16, bf16) and with --memory-budget set to what FunASR's
batch_size_s=60 took in the same round. The model is Paraformer-large's architecture at its real
size with random weights (as bench/bench_paraformer.py, built once into --work). The recording
is repeated --repeat times (zh_long.flac x 6 is about an hour, the length of the seeds' sweep).

Both sides get the same speech segments: the Silero spans of one copy (--spans, a JSON file of
{"audio_s", "spans_ms"}, as bench_paraformer.py writes it), shifted for each copy. FunASR's VAD
step is replaced by a stand-in returning them. Neither side punctuates. Each run is a fresh
child process; its peak GPU memory is torch's peak reserved bytes (both sides allocate through
torch's caching allocator; the CUDA context, the same for both, is not in it). Speed is audio
seconds per second of transcription, model loading and tingxie's memory profile excluded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # funasr_random_model: the random-weight builder

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_AUDIO = ROOT.parent / "shared" / "audio" / "long" / "zh_long.flac"
FUNASR = {"funasr-60": 60, "funasr-300": 300, "funasr-600": 600}
# system -> (compute type, --max-batch-size; None: tingxie's own cap for a GPU)
TINGXIE = {"tingxie-fp32": ("float32", None), "tingxie-fp16": ("float16", None), "tingxie-bf16": ("bfloat16", None),
           "tingxie-fp32-at-funasr-60": ("float32", None), "tingxie-fp32-b16": ("float32", 16)}
SYSTEMS = tuple(FUNASR) + tuple(TINGXIE)
DEFAULT_SYSTEMS = ("funasr-60", "funasr-300", "funasr-600", "tingxie-fp32", "tingxie-fp32-at-funasr-60",
                   "tingxie-fp16", "tingxie-bf16")
GiB = 2**30


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio", type=Path, default=DEFAULT_AUDIO)
    p.add_argument("--spans", type=Path, required=True, help="JSON with the Silero spans of one copy of --audio")
    p.add_argument("--repeat", type=int, default=1, help="copies of the recording, one after another")
    p.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "tingxie-bench-cuda")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--systems", nargs="+", default=list(DEFAULT_SYSTEMS), choices=SYSTEMS)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "paraformer_cuda",
                   help="path stem: writes STEM.json (after every run) and STEM.md")
    p.add_argument("--memory-budget", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def load(args):
    """The repeated recording and its spans."""
    import numpy as np
    import soundfile as sf

    audio, rate = sf.read(args.audio, dtype="float32")
    assert rate == 16000, f"{args.audio}: {rate} Hz, expected 16000"
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    spans = json.loads(args.spans.read_text())["spans_ms"]
    copy_ms = len(audio) // 16
    audio = audio[: copy_ms * 16]
    spans_ms = [[a + k * copy_ms, b + k * copy_ms] for k in range(args.repeat) for a, b in spans]
    return np.tile(audio, args.repeat), spans_ms


def model_dir(args) -> Path:
    return args.work / "paraformer-large-random"


def prepare(args) -> None:
    if (model_dir(args) / "model.pt").is_file():
        return
    from funasr_random_model import PARAFORMER_LARGE, chinese_vocab, save_model_dir

    audio, _ = load(args)
    args.work.mkdir(parents=True, exist_ok=True)
    tmp = args.work / "paraformer-large-random.tmp"
    save_model_dir(tmp, PARAFORMER_LARGE, chinese_vocab(8404), audio_for_cmvn=[audio[: 60 * 16000]], confident=20.0)
    tmp.rename(model_dir(args))


def child_funasr(args, batch_size_s: int) -> dict:
    import torch
    from funasr import AutoModel

    from tingxie.benchmark.funasr_case import given_spans_vad

    audio, spans_ms = load(args)
    started = time.perf_counter()
    model = AutoModel(model=str(model_dir(args)), device="cuda", disable_update=True, disable_pbar=True,
                      log_level="ERROR")
    model.vad_model = given_spans_vad(spans_ms)
    torch.cuda.synchronize()
    loaded = time.perf_counter()
    torch.cuda.reset_peak_memory_stats()
    [result] = model.generate(input=audio, batch_size_s=batch_size_s)
    torch.cuda.synchronize()
    done = time.perf_counter()
    return {"load_s": loaded - started, "transcribe_s": done - loaded, "text": result["text"],
            "segments": len(spans_ms), "peak_reserved": torch.cuda.max_memory_reserved(),
            "peak_allocated": torch.cuda.max_memory_allocated()}


def child_tingxie(args, compute_type: str, max_batch_size: int | None) -> dict:
    import torch

    from tingxie.backends.paraformer.options import ParaformerOptions
    from tingxie.options import BatchOptions, ModelOptions, TranscribeOptions
    from tingxie.engine.pipeline import Transcriber
    from bench_paraformer import spans_to_segments  # this folder: the CPU benchmark's segments

    audio, spans_ms = load(args)
    segments = spans_to_segments(audio, spans_ms)
    options = TranscribeOptions(
        model=ModelOptions(name=str(model_dir(args)), device="cuda", compute_type=compute_type,
                           paraformer=ParaformerOptions(punctuate=False)),
        batch=BatchOptions(memory_budget=args.memory_budget, max_batch_size=max_batch_size))
    started = time.perf_counter()
    transcriber = Transcriber(options)  # the memory profile (a child process, cached) included
    torch.cuda.synchronize()
    loaded = time.perf_counter()
    torch.cuda.reset_peak_memory_stats()
    transcript = transcriber.transcribe_segments(segments, total_s=len(audio) / 16000)
    torch.cuda.synchronize()
    done = time.perf_counter()
    return {"load_s": loaded - started, "transcribe_s": done - loaded,
            "text": " ".join(p.text for p in transcript.segments), "segments": transcript.stats.segments,
            "batches": transcript.stats.batches, "oom_retries": transcript.stats.oom_retries,
            "nan_fallbacks": transcriber.backend.precision.nan_fallbacks,
            "budget": transcriber.memory.total_budget_bytes,
            "peak_reserved": torch.cuda.max_memory_reserved(), "peak_allocated": torch.cuda.max_memory_allocated()}


def run_child(args, system: str, budget: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", system, "--audio", str(args.audio), "--spans", str(args.spans),
           "--repeat", str(args.repeat), "--work", str(args.work)]
    if budget is not None:
        cmd += ["--memory-budget", f"{budget // 2**20}MiB"]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{system} failed with status {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def agreement(reference: str, other: str) -> float:
    """1 - the character error rate of other against reference (spaces left out): an edit
    distance, so one token more or less early on costs one character, not the rest."""
    from tingxie.benchmark.evaluation import edit_distance

    ref, got = "".join(reference.split()), "".join(other.split())
    return 1 - edit_distance(ref, got) / max(1, len(ref))


def summarise(args, audio_s: float, rounds: list[dict]) -> dict:
    import torch

    summary = {}
    for system in rounds[0]:
        runs = [row[system] for row in rounds if system in row]
        entry = {"speed_x": statistics.median(audio_s / m["transcribe_s"] for m in runs),
                 "peak_reserved_gib": statistics.median(m["peak_reserved"] / GiB for m in runs),
                 "load_s": statistics.median(m["load_s"] for m in runs),
                 "batches": runs[-1].get("batches"), "oom_retries": runs[-1].get("oom_retries"),
                 "nan_fallbacks": runs[-1].get("nan_fallbacks"), "budget_gib": (runs[-1].get("budget") or 0) / GiB}
        if "funasr-60" in rounds[0] and system != "funasr-60":
            entry["speed_vs_funasr_60"] = statistics.median(row["funasr-60"]["transcribe_s"] / row[system]["transcribe_s"]
                                                            for row in rounds if system in row)
            entry["agreement_with_funasr_60"] = agreement(rounds[-1]["funasr-60"]["text"], runs[-1]["text"])
        summary[system] = entry
    return {"audio": f"{args.audio.name} x {args.repeat}", "audio_s": audio_s, "runs": len(rounds),
            "segments": rounds[0][next(iter(rounds[0]))]["segments"], "summary": summary,
            "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
            "command": "bench/bench_paraformer_cuda.py " + " ".join(sys.argv[1:])}


def markdown(report: dict) -> str:
    lines = [f"Audio: {report['audio']}, {report['audio_s']:.0f} s, {report['segments']} segments; median of "
             f"{report['runs']} runs; {report['gpu']}, torch {report['torch']}.", "",
             "| system | speed (x real time) | vs FunASR 60 s | peak GPU memory (GiB, torch reserved) | budget (GiB) | "
             "batches | OOM retries | 1 - CER against FunASR 60 s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for system, e in report["summary"].items():
        lines.append(f"| {system} | {e['speed_x']:.0f} | {e.get('speed_vs_funasr_60', 1.0):.2f}x | "
                     f"{e['peak_reserved_gib']:.2f} | {e['budget_gib']:.1f} | {e['batches'] or '-'} | "
                     f"{e['oom_retries'] if e['oom_retries'] is not None else '-'} | "
                     + (f"{100 * e['agreement_with_funasr_60']:.1f} %" if "agreement_with_funasr_60" in e else "-")
                     + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        result = child_funasr(args, FUNASR[args.child]) if args.child in FUNASR else child_tingxie(args, *TINGXIE[args.child])
        print(json.dumps(result, ensure_ascii=False))
        return 0
    prepare(args)
    audio, _ = load(args)
    audio_s = len(audio) / 16000
    del audio
    rounds = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for r in range(args.runs):
        row = {}
        rounds.append(row)
        for system in args.systems:
            budget = None
            if system == "tingxie-fp32-at-funasr-60":
                if "funasr-60" not in row:
                    raise SystemExit(f"{system} needs funasr-60 before it in --systems")
                budget = row["funasr-60"]["peak_reserved"]
            row[system] = m = run_child(args, system, budget)
            print(f"round {r + 1} {system}: {audio_s / m['transcribe_s']:.1f}x real time, peak reserved "
                  f"{m['peak_reserved'] / GiB:.2f} GiB, load {m['load_s']:.1f} s", file=sys.stderr, flush=True)
            args.out.with_suffix(".json").write_text(json.dumps(summarise(args, audio_s, rounds), indent=2,
                                                                ensure_ascii=False))
    # the last round's texts, for comparisons the table does not make
    args.out.with_suffix(".texts.json").write_text(json.dumps({system: m["text"] for system, m in rounds[-1].items()},
                                                              ensure_ascii=False))
    table = markdown(summarise(args, audio_s, rounds))
    args.out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
