"""Paraformer-large on CPU: tingxie (fp32, bf16, int8) against FunASR's AutoModel.generate.

    .venv/bin/python bench/bench_paraformer.py --runs 3

No weights can be downloaded here, so the model is Paraformer-large's architecture at its real
size (BiCifParaformer: SANM encoder of 50 layers, d=512, 4 heads, FFN 2048; decoder of 16
layers; vocabulary 8404), built from FunASR's template configuration with random weights and
saved in FunASR's model-directory format (built once, into --work). Compute and memory do not
depend on the weights' values.

Both sides get the same speech segments: Silero VAD (tingxie's) spans of the recording, rounded
to whole milliseconds. FunASR's VAD step is replaced by a stand-in that returns those spans, so
AutoModel.generate runs its own inference_with_vad on them (one segment at a time on CPU, as it
does) with ncpu set to the usable CPUs. tingxie runs them through its Transcriber (transcribe_segments):
planner batches sized by the start-up memory profile, the backend's batched inference.
Neither side punctuates. Every run is a fresh child process; its peak RSS is read by the parent
from os.wait4; systems are interleaved round-robin and each ratio is taken within one round.
Speed is audio seconds per second of transcription (model loading excluded, reported apart).
tingxie's default (--engine auto) runs fp32 and int8 encoders and decoders through ONNX Runtime
(exported once, before anything is timed); bf16 runs in torch. On request (--systems ...):
tingxie-fp32-torch / tingxie-int8-torch, the same in torch; tingxie-fp32-sequential, torch fp32
with a batch's items one after another on all threads (item_workers = 1) instead of side by
side on one thread each; tingxie-fp32-budget / tingxie-int8-budget, tingxie given a memory
budget of 0.6x FunASR's peak RSS in the same round (funasr must come first).
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
SYSTEMS = ("funasr", "tingxie-fp32", "tingxie-bf16", "tingxie-int8")
# on request only: a batch's items one after another on all threads, not side by side
SEQUENTIAL = "tingxie-fp32-sequential"
# on request only: the encoder in torch where the default (--engine auto) runs it in ONNX Runtime
TORCH_ENGINE = ("tingxie-fp32-torch", "tingxie-int8-torch")
# on request only: --memory-budget at BUDGET_SHARE of FunASR's peak RSS in the same round
# (funasr must be among the systems, before these)
BUDGET_SHARE = 0.6
BUDGETED = ("tingxie-fp32-budget", "tingxie-int8-budget")
EXTRA = (SEQUENTIAL,) + TORCH_ENGINE + BUDGETED
# system -> (compute type, engine)
COMPUTE = {"tingxie-fp32": ("float32", "auto"), "tingxie-bf16": ("bfloat16", "auto"), "tingxie-int8": ("int8", "auto"),
           SEQUENTIAL: ("float32", "torch"), "tingxie-fp32-torch": ("float32", "torch"),
           "tingxie-int8-torch": ("int8", "torch"), "tingxie-fp32-budget": ("float32", "auto"),
           "tingxie-int8-budget": ("int8", "auto")}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio", type=Path, default=DEFAULT_AUDIO)
    p.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "tingxie-bench-paraformer",
                   help="where the random model, the spans and the profile cache live")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS + EXTRA)
    p.add_argument("--seconds", type=float, default=None, help="use only the first SECONDS of the audio")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for both sides (default: the usable CPUs)")
    p.add_argument("--max-batch-size", type=int, default=None, help="tingxie's --max-batch-size (default: its own)")
    p.add_argument("--no-errors", action="store_true", help="skip the encoder relative-error measurement")
    p.add_argument("--memory-budget", default=None, help=argparse.SUPPRESS)  # set by the parent for BUDGETED
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "paraformer",
                   help="path stem: writes STEM.json and STEM.md")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# --- preparation (in the parent) ------------------------------------------------------------

def prepare(args) -> tuple[Path, Path, float]:
    """The model directory and the spans file, made once; the audio's duration."""
    args.work.mkdir(parents=True, exist_ok=True)
    model_dir = args.work / "paraformer-large-random"
    spans_path = args.work / f"spans-{args.audio.stem}-{args.seconds or 'all'}.json"
    if not (model_dir / "model.pt").is_file() or not spans_path.is_file() or not _exported(args.work, model_dir):
        subprocess.run([sys.executable, __file__, "--child", "prepare", "--audio", str(args.audio),
                        "--work", str(args.work)] + (["--seconds", str(args.seconds)] if args.seconds else []),
                       check=True)
    spans = json.loads(spans_path.read_text())
    return model_dir, spans_path, spans["audio_s"]


def _exported(work: Path, model_dir: Path) -> bool:
    os.environ.setdefault("TINGXIE_CACHE_DIR", str(work / "cache"))
    from tingxie.backends.paraformer.onnx_export import PARTS, export_dir, part_file

    folder = export_dir(model_dir, model_dir / "model.pt")
    return all((folder / part_file(part, int8)).is_file() for part in PARTS for int8 in (False, True))


def child_prepare(args) -> None:
    from funasr_random_model import PARAFORMER_LARGE, chinese_vocab, save_model_dir
    from tingxie.vad.detector import detect_speech

    audio = load_audio(args)
    model_dir = args.work / "paraformer-large-random"
    if not (model_dir / "model.pt").is_file():
        started = time.perf_counter()
        tmp = args.work / "paraformer-large-random.tmp"
        save_model_dir(tmp, PARAFORMER_LARGE, chinese_vocab(8404), audio_for_cmvn=[audio[: 60 * 16000]],
                       confident=20.0)
        tmp.rename(model_dir)
        print(f"built {model_dir} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    # the ONNX encoder and decoder (--engine auto), exported once before anything is timed:
    # the export child's peak would otherwise count in the first measured child's
    os.environ.setdefault("TINGXIE_CACHE_DIR", str(args.work / "cache"))
    from tingxie.backends.paraformer.onnx_export import exported_parts

    started = time.perf_counter()
    exported_parts(model_dir, model_dir / "model.pt", int8=True)  # writes fp32 and int8
    print(f"ONNX encoder and decoder ready in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    spans = [[round(s.start * 1000), round(s.end * 1000)] for s in detect_speech(audio)]
    spans_path = args.work / f"spans-{args.audio.stem}-{args.seconds or 'all'}.json"
    spans_path.write_text(json.dumps({"audio_s": len(audio) / 16000, "spans_ms": spans}))


def load_audio(args):
    from tingxie.audio.decode import decode_audio

    audio = decode_audio(str(args.audio))
    return audio[: int(args.seconds * 16000)] if args.seconds else audio


# --- the measured children -----------------------------------------------------------------

def child_funasr(args, model_dir: Path, spans_ms: list[list[int]]) -> dict:
    from funasr import AutoModel

    from tingxie.benchmark.funasr_case import given_spans_vad
    from tingxie.memory.resources import usable_cpus

    audio = load_audio(args)
    started = time.perf_counter()
    model = AutoModel(model=str(model_dir), device="cpu", ncpu=args.threads or usable_cpus(), disable_update=True,
                      disable_pbar=True, log_level="ERROR")

    model.vad_model = given_spans_vad(spans_ms)
    loaded = time.perf_counter()
    [result] = model.generate(input=audio)
    done = time.perf_counter()
    return {"load_s": loaded - started, "transcribe_s": done - loaded, "text": result["text"],
            "segments": len(spans_ms), "batches": len(spans_ms)}


def spans_to_segments(audio, spans_ms: list[list[int]]) -> list:
    from tingxie.segments import AudioSegment

    return [AudioSegment(i, a / 1000, b / 1000, audio[a * 16: b * 16]) for i, (a, b) in enumerate(spans_ms)]


def tingxie_options(model_dir: Path, compute_type: str, engine: str, *, threads: int = 0,
                    max_batch_size: int | None = None, memory_budget: str | None = None):
    """The options tingxie runs the benchmark's model with (no punctuation, as FunASR's side)."""
    from tingxie.backends.paraformer.options import ParaformerOptions
    from tingxie.options import BatchOptions, ModelOptions, TranscribeOptions

    return TranscribeOptions(model=ModelOptions(name=str(model_dir), device="cpu", compute_type=compute_type,
                                                threads=threads,
                                                paraformer=ParaformerOptions(punctuate=False, engine=engine)),
                             batch=BatchOptions(max_batch_size=max_batch_size, memory_budget=memory_budget))


def child_tingxie(args, model_dir: Path, spans_ms: list[list[int]], compute_type: str, engine: str) -> dict:
    from tingxie.backends.paraformer.backend import ParaformerBackend
    from tingxie.memory.planning import MemoryPlanner
    from tingxie.options import DecodeOptions
    from tingxie.engine.pipeline import Transcriber

    os.environ.setdefault("TINGXIE_CACHE_DIR", str(args.work / "cache"))
    audio = load_audio(args)
    segments = spans_to_segments(audio, spans_ms)
    started = time.perf_counter()
    options = tingxie_options(model_dir, compute_type, engine, threads=args.threads,
                              max_batch_size=args.max_batch_size, memory_budget=args.memory_budget)
    backend = ParaformerBackend(model_dir, "paraformer-large-random", options.model, DecodeOptions())
    if args.child == SEQUENTIAL:
        backend.item_workers = 1
    memory = MemoryPlanner.profiled(backend, options)  # cached per model and compute type
    transcriber = Transcriber(options, backend=backend, memory=memory)
    loaded = time.perf_counter()
    transcript = transcriber.transcribe_segments(segments, total_s=len(audio) / 16000)
    done = time.perf_counter()
    return {"load_s": loaded - started, "transcribe_s": done - loaded,
            "text": " ".join(p.text for p in transcript.segments), "segments": transcript.stats.segments,
            "batches": transcript.stats.batches, "oom_retries": transcript.stats.oom_retries,
            "nan_fallbacks": backend.precision.nan_fallbacks, "engine": backend.engine}


def child_errors(args, model_dir: Path, spans_ms: list[list[int]]) -> dict:
    """Relative error of each engine's and precision's encoder output against torch fp32, on real speech."""
    from tingxie.backends.paraformer.backend import ParaformerBackend
    from funasr_random_model import encoder_relative_error
    from tingxie.backends.paraformer.precision import cpu_has_bf16
    from tingxie.options import DecodeOptions

    audio = load_audio(args)
    segments = [audio[a * 16: b * 16] for a, b in spans_ms[:12]]

    def backend(compute_type, engine):
        opts = tingxie_options(model_dir, compute_type, engine, threads=args.threads).model
        return ParaformerBackend(model_dir, "paraformer-large-random", opts, DecodeOptions())

    reference = backend("float32", "torch")
    out = {"segments": len(segments), "speech_s": sum(len(s) for s in segments) / 16000}
    for name, compute_type, engine in ERROR_ROWS:
        if compute_type == "bfloat16" and not cpu_has_bf16():
            continue
        other = backend(compute_type, engine)
        errors = [encoder_relative_error(reference, other, segments[i: i + 4]) for i in range(0, len(segments), 4)]
        out[name] = max(errors)
        del other
    return out


# (name, compute type, engine) of the encoders whose error against torch fp32 is measured
ERROR_ROWS = (("float32 onnx", "float32", "onnx"), ("bfloat16", "bfloat16", "torch"),
              ("int8 onnx", "int8", "onnx"), ("int8 torch", "int8", "torch"))


def run_child(args, system: str, model_dir: Path, spans_path: Path, budget_bytes: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", system, "--audio", str(args.audio), "--work", str(args.work),
           "--threads", str(args.threads)] + (["--max-batch-size", str(args.max_batch_size)] if args.max_batch_size else [])
    if budget_bytes is not None:
        cmd += ["--memory-budget", f"{budget_bytes // 2**20}MiB"]
    if args.seconds:
        cmd += ["--seconds", str(args.seconds)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{system} failed with status {status}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_bytes"] = usage.ru_maxrss * 1024
    result["process_s"] = time.perf_counter() - started
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return run_as_child(args)
    model_dir, spans_path, audio_s = prepare(args)
    rounds = []
    for r in range(args.runs):
        row = {}
        for system in args.systems:
            budget = None
            if system in BUDGETED:
                if "funasr" not in row:
                    raise SystemExit(f"{system} needs funasr before it in --systems (its budget is a share of FunASR's peak)")
                budget = int(BUDGET_SHARE * row["funasr"]["peak_rss_bytes"])
            row[system] = run_child(args, system, model_dir, spans_path, budget)
            m = row[system]
            print(f"round {r + 1} {system}: {audio_s / m['transcribe_s']:.1f}x real time, "
                  f"peak RSS {m['peak_rss_bytes'] / 2**30:.2f} GiB, load {m['load_s']:.1f} s", file=sys.stderr)
        rounds.append(row)
    errors = None if args.no_errors else run_child(args, "errors", model_dir, spans_path)
    report = summarise(args, audio_s, rounds, errors)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    table = markdown(report)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    return 0


def run_as_child(args) -> int:
    if args.child == "prepare":
        child_prepare(args)
        return 0
    model_dir = args.work / "paraformer-large-random"
    spans = json.loads((args.work / f"spans-{args.audio.stem}-{args.seconds or 'all'}.json").read_text())["spans_ms"]
    if args.child == "funasr":
        result = child_funasr(args, model_dir, spans)
    elif args.child == "errors":
        result = child_errors(args, model_dir, spans)
    else:
        result = child_tingxie(args, model_dir, spans, *COMPUTE[args.child])
    print(json.dumps(result, ensure_ascii=False))
    return 0


def summarise(args, audio_s: float, rounds: list[dict], errors: dict | None) -> dict:
    systems = list(rounds[0])
    summary = {}
    for system in systems:
        runs = [row[system] for row in rounds]
        entry = {
            "speed_x": statistics.median(audio_s / m["transcribe_s"] for m in runs),
            "peak_rss_gib": statistics.median(m["peak_rss_bytes"] / 2**30 for m in runs),
            "load_s": statistics.median(m["load_s"] for m in runs),
            "batches": runs[-1]["batches"],
            "engine": runs[-1].get("engine", "-"),
            "segments": runs[-1]["segments"],
        }
        if "funasr" in systems and system != "funasr":
            entry["speed_vs_funasr"] = statistics.median(row["funasr"]["transcribe_s"] / row[system]["transcribe_s"]
                                                         for row in rounds)
            entry["rss_vs_funasr"] = statistics.median(row[system]["peak_rss_bytes"] / row["funasr"]["peak_rss_bytes"]
                                                       for row in rounds)
            # characters, spaces left out: FunASR spaces its words, tingxie's pieces join Chinese without
            ref, got = list("".join(rounds[-1]["funasr"]["text"].split())), list("".join(runs[-1]["text"].split()))
            entry["tokens_equal_to_funasr"] = sum(a == b for a, b in zip(ref, got)) / max(1, len(ref))
            entry["token_count"] = (len(got), len(ref))
        summary[system] = entry
    return {"audio": str(args.audio), "audio_s": audio_s, "runs": len(rounds), "summary": summary,
            "threads": args.threads or None, "max_batch_size": args.max_batch_size, "load_average": os.getloadavg(),
            "encoder_relative_error": errors, "machine": machine(),
            "command": "bench/bench_paraformer.py " + " ".join(sys.argv[1:])}


def machine() -> dict:
    import platform

    import torch

    from tingxie.benchmark.report import cpu_model
    from tingxie.memory.resources import usable_cpus

    return {"cpu": cpu_model(), "usable_cpus": usable_cpus(), "torch": torch.__version__, "python": platform.python_version()}


def markdown(report: dict) -> str:
    lines = [f"Audio: {Path(report['audio']).name}, {report['audio_s']:.0f} s; median of {report['runs']} runs; "
             f"{report['machine']['cpu']}, {report['machine']['usable_cpus']} usable CPUs, "
             f"threads {report['threads'] or report['machine']['usable_cpus']}, torch {report['machine']['torch']}; "
             f"load average at the end {report['load_average'][0]:.1f}.",
             "",
             "| system | encoder | speed (x real time) | vs FunASR | peak RSS (GiB) | vs FunASR | load (s) | batches | tokens = FunASR's |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for system, e in report["summary"].items():
        lines.append(
            f"| {system} | {e['engine']} | {e['speed_x']:.1f} | {e.get('speed_vs_funasr', 1.0):.2f}x | {e['peak_rss_gib']:.2f} | "
            f"{e.get('rss_vs_funasr', 1.0):.2f}x | {e['load_s']:.1f} | {e['batches']} | "
            + (f"{100 * e['tokens_equal_to_funasr']:.1f} %" if "tokens_equal_to_funasr" in e else "-") + " |")
    errors = report.get("encoder_relative_error")
    if errors:
        lines += ["", f"Encoder output relative error against torch fp32 (norm(diff)/norm(fp32), worst batch, "
                      f"{errors['segments']} segments, {errors['speech_s']:.0f} s of speech): "
                  + ", ".join(f"{k} {errors[k]:.2e}" for k, *_ in ERROR_ROWS if k in errors)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
