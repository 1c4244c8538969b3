"""Paraformer-large: tingxie against FunASR's AutoModel.generate, on a CPU or a CUDA GPU.

    .venv/bin/python bench/bench_paraformer.py --runs 3                       # CPU: fp32, bf16, int8
    python bench/bench_paraformer.py --device cuda --repeat 6 --runs 2        # GPU: FunASR's batch_size_s sweep

No weights can be downloaded here, so the model is Paraformer-large's architecture at its real
size (BiCifParaformer: SANM encoder of 50 layers, d=512, 4 heads, FFN 2048; decoder of 16
layers; vocabulary 8404), built from FunASR's template configuration with random weights and
saved in FunASR's model-directory format (built once, into --work, with its ONNX graphs).
Compute and memory do not depend on the weights' values.

Every run is a case of tingxie's benchmark harness (tingxie.benchmark.runner.run_once): a fresh
child process, its peak read from outside (the child's VmHWM; on a GPU, torch's peak reserved
bytes, which both sides allocate through). Systems run round-robin, each ratio taken within one
round. Both sides get the same speech segments: Silero's spans of the input (--seconds of
--audio, --repeat times), found at load; FunASR's VAD model is replaced by a stand-in returning
them, so AutoModel.generate runs its own inference_with_vad on them (one segment at a time on a
CPU, batch_size_s groups on a GPU), and tingxie runs them through Transcriber.transcribe_segments.
Neither side punctuates. Speed is audio seconds per second of transcription (loading excluded);
CPU is the transcription's CPU seconds, every thread's (spin and barrier waits included).

Systems: `funasr` (batch_size_s 300, its default) or `funasr-N` (batch_size_s N); `tingxie-P`
with P one of fp32, fp16, bf16, int8, then optionally `-torch` (the encoder and decoder in torch
where --engine auto would run ONNX Runtime) and `-budget` (--memory-budget at 0.6x the peak of
the first FunASR system in the same round on a CPU, at that peak on a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # funasr_random_model: the random-weight builder

from tingxie.benchmark.spec import CaseSpec  # noqa: E402  (no heavy import: the parent stays small)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_AUDIO = ROOT.parent / "shared" / "audio" / "long" / "zh_long.flac"
DEFAULT_SYSTEMS = {"cpu": ("funasr", "tingxie-fp32", "tingxie-bf16", "tingxie-int8"),
                   "cuda": ("funasr-60", "funasr-300", "funasr-600", "tingxie-fp32", "tingxie-fp32-budget",
                            "tingxie-fp16", "tingxie-bf16")}
PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "int8": "int8"}
SYSTEM = re.compile(r"^(?:funasr(?:-(?P<batch_s>\d+))?|tingxie-(?P<precision>fp32|fp16|bf16|int8)"
                    r"(?P<torch>-torch)?(?P<budget>-budget)?)$")
BUDGET_SHARE = {"cpu": 0.6, "cuda": 1.0}  # of the first FunASR system's peak, same round
GiB = 2**30


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio", type=Path, default=DEFAULT_AUDIO)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "tingxie-bench-paraformer",
                   help="where the random model, the input and the caches live")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--systems", nargs="+", default=None, help="default: " + "; ".join(
        f"{device}: {' '.join(systems)}" for device, systems in DEFAULT_SYSTEMS.items()))
    p.add_argument("--seconds", type=float, default=None, help="use only the first SECONDS of the audio")
    p.add_argument("--repeat", type=int, default=1, help="copies of the (cut) recording, one after another")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for both sides (default: the usable CPUs)")
    p.add_argument("--max-batch-size", type=int, default=None, help="tingxie's --max-batch-size (default: its own)")
    p.add_argument("--no-errors", action="store_true", help="skip the encoder relative-error measurement (CPU)")
    p.add_argument("--timeout", type=float, default=3600, help="seconds a run may take before it is killed")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "paraformer",
                   help="path stem: writes STEM.json and STEM.md")
    p.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)  # the preparation child
    args = p.parse_args(argv)
    args.systems = args.systems or list(DEFAULT_SYSTEMS[args.device])
    for system in args.systems:
        if not SYSTEM.match(system):
            p.error(f"--systems {system}: use funasr, funasr-N, or tingxie-{{fp32,fp16,bf16,int8}}[-torch][-budget]")
        if system.endswith("-budget") and not any(s.startswith("funasr") for s in args.systems[: args.systems.index(system)]):
            p.error(f"--systems {system}: its budget is a share of FunASR's peak: put a funasr system before it")
    return args


# --- preparation: the model, its ONNX graphs and the input, made once ----------------------

def model_dir(args) -> Path:
    return args.work / "paraformer-large-random"


def cache_dir(args) -> Path:
    return args.work / "cache"


def input_path(args) -> Path:
    return args.work / f"input-{args.audio.stem}-{args.seconds or 'all'}-x{args.repeat}.wav"


def prepare(args) -> None:
    """In a child (the parent stays small: its RSS at spawn is no run's floor)."""
    if not (model_dir(args) / "model.pt").is_file() or not input_path(args).is_file():
        command = [sys.executable, __file__, "--prepare-only", "--audio", str(args.audio), "--work", str(args.work),
                   "--repeat", str(args.repeat), "--device", args.device]
        subprocess.run(command + (["--seconds", str(args.seconds)] if args.seconds else []), check=True)


def prepare_now(args) -> None:
    import numpy as np
    import soundfile

    from funasr_random_model import PARAFORMER_LARGE, chinese_vocab, save_model_dir
    from tingxie.audio.decode import decode_audio

    args.work.mkdir(parents=True, exist_ok=True)
    os.environ["TINGXIE_CACHE_DIR"] = str(cache_dir(args))  # where the cases will look for the graphs
    audio = decode_audio(str(args.audio))
    audio = audio[: int(args.seconds * 16000)] if args.seconds else audio
    if not (model_dir(args) / "model.pt").is_file():
        staging = args.work / "paraformer-large-random.tmp"
        save_model_dir(staging, PARAFORMER_LARGE, chinese_vocab(8404), audio_for_cmvn=[audio[: 60 * 16000]],
                       confident=20.0)
        staging.rename(model_dir(args))
    if args.device == "cpu":  # the ONNX graphs (--engine auto), exported before anything is timed
        from tingxie.backends.paraformer.onnx_export import exported_parts

        exported_parts(model_dir(args), model_dir(args) / "model.pt", int8=True)  # writes fp32 and int8
    soundfile.write(input_path(args), np.tile(audio, args.repeat), 16000, subtype="FLOAT")


# --- the cases ------------------------------------------------------------------------------

def tingxie_options(model: Path, compute_type: str, engine: str, *, device: str = "cpu", threads: int = 0,
                    max_batch_size: int | None = None, memory_budget: str | None = None):
    """The options tingxie runs the benchmark's model with (no punctuation, as FunASR's side)."""
    from tingxie.backends.paraformer.options import ParaformerOptions
    from tingxie.options import BatchOptions, ModelOptions, TranscribeOptions

    return TranscribeOptions(model=ModelOptions(name=str(model), device=device, compute_type=compute_type,
                                                threads=threads,
                                                paraformer=ParaformerOptions(punctuate=False, engine=engine)),
                             batch=BatchOptions(max_batch_size=max_batch_size, memory_budget=memory_budget))


def case(args, system: str, budget_bytes: int | None = None) -> CaseSpec:
    match = SYSTEM.match(system)
    common = dict(name=system, audio=str(input_path(args)), model=str(model_dir(args)), device=args.device,
                  threads=args.threads)
    if match["precision"] is None:
        return CaseSpec(kind="funasr", batch_size_s=float(match["batch_s"] or 300), **common)
    options = tingxie_options(model_dir(args), PRECISIONS[match["precision"]], "torch" if match["torch"] else "auto",
                              device=args.device, threads=args.threads, max_batch_size=args.max_batch_size,
                              memory_budget=f"{budget_bytes // 2**20}MiB" if budget_bytes else None)
    return CaseSpec(kind="tingxie", compute_type=options.model.compute_type, options=options.to_dict(),
                    batch_size=args.max_batch_size or 0, memory_budget=options.batch.memory_budget, given_spans=True,
                    **common)


def peak_bytes(args, record) -> int:
    if args.device == "cuda":
        return record.extra["gpu_peak_reserved_bytes"]
    return record.hwm_bytes or record.peak_rss_bytes


def run_rounds(args) -> list[dict]:
    from tingxie.benchmark.runner import run_once

    env = dict(os.environ, TINGXIE_CACHE_DIR=str(cache_dir(args)))
    for system in args.systems:  # one unmeasured load each: exports, memory profiles, page cache
        run_once(case(args, system), prepare=True, timeout_s=args.timeout, env=env)  # a -budget one: unbudgeted
    rounds = []
    for number in range(1, args.runs + 1):
        row = {}
        for system in args.systems:
            budget = None
            if system.endswith("-budget"):
                first_funasr = next(s for s in args.systems if s.startswith("funasr"))
                budget = int(BUDGET_SHARE[args.device] * peak_bytes(args, row[first_funasr]))
            row[system] = record = run_once(case(args, system, budget), timeout_s=args.timeout, env=env)
            record.extra["budget_bytes"] = budget or record.extra.get("budget_bytes")
            print(f"round {number} {system}: {record.audio_s / record.wall_s:.1f}x real time, CPU "
                  f"{record.run_cpu_s:.1f} s, peak {peak_bytes(args, record) / GiB:.2f} GiB, load {record.load_s:.1f} s, "
                  f"load average {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
        rounds.append(row)
    return rounds


# --- the report -------------------------------------------------------------------------------

def agreement(reference: str, other: str) -> float:
    """1 - the character error rate of other against reference (spaces left out: FunASR spaces
    its words, tingxie joins Chinese without); an edit distance, so one token more or less costs
    one character, not the rest."""
    from tingxie.benchmark.evaluation import edit_distance

    ref, got = "".join(reference.split()), "".join(other.split())
    return 1 - edit_distance(ref, got) / max(1, len(ref))


def summarise(args, rounds: list[dict], errors: dict | None) -> dict:
    from tingxie.benchmark.report import cpu_model
    from tingxie.memory.resources import usable_cpus

    reference = next(s for s in args.systems if s.startswith("funasr")) if any(
        s.startswith("funasr") for s in args.systems) else None
    summary = {}
    for system in args.systems:
        runs = [row[system] for row in rounds]
        entry = {"speed_x": statistics.median(r.audio_s / r.wall_s for r in runs),
                 "cpu_s": statistics.median(r.run_cpu_s for r in runs),
                 "peak_gib": statistics.median(peak_bytes(args, r) / GiB for r in runs),
                 "load_s": statistics.median(r.load_s for r in runs),
                 "batches": runs[-1].extra.get("batches"), "oom_retries": runs[-1].extra.get("oom_retries"),
                 "budget_gib": (runs[-1].extra.get("budget_bytes") or 0) / GiB}
        if reference and system != reference:
            entry["speed_vs_funasr"] = statistics.median(row[reference].wall_s / row[system].wall_s for row in rounds)
            entry["cpu_vs_funasr"] = statistics.median(row[system].run_cpu_s / row[reference].run_cpu_s
                                                       for row in rounds)
            entry["peak_vs_funasr"] = statistics.median(peak_bytes(args, row[system]) / peak_bytes(args, row[reference])
                                                        for row in rounds)
            entry["agreement_with_funasr"] = agreement(rounds[-1][reference].text, runs[-1].text)
        summary[system] = entry
    return {"audio": f"{args.audio.name}" + (f" (first {args.seconds:.0f} s)" if args.seconds else "")
            + (f" x {args.repeat}" if args.repeat > 1 else ""), "audio_s": rounds[0][args.systems[0]].audio_s,
            "device": args.device, "reference": reference, "runs": len(rounds), "summary": summary,
            "machine": {"cpu": cpu_model(), "usable_cpus": usable_cpus()}, "threads": args.threads or None,
            "max_batch_size": args.max_batch_size, "load_average_start": args.load_average_start,
            "load_average": os.getloadavg(), "encoder_relative_error": errors,
            "command": "bench/bench_paraformer.py " + " ".join(sys.argv[1:])}


def markdown(report: dict) -> str:
    memory = "peak GPU memory (GiB, torch reserved)" if report["device"] == "cuda" else "peak RSS (GiB)"
    against = report["reference"] or "-"
    lines = [f"Audio: {report['audio']}, {report['audio_s']:.0f} s; {report['device']}; median of {report['runs']} "
             f"runs; {report['machine']['cpu']}, {report['machine']['usable_cpus']} usable CPUs, threads "
             f"{report['threads'] or report['machine']['usable_cpus']}; load average at the start "
             f"{report['load_average_start'][0]:.1f}, at the end {report['load_average'][0]:.1f}.", "",
             f"| system | speed (x real time) | vs {against} | CPU (s) | vs {against} | {memory} | vs {against} | "
             f"budget (GiB) | load (s) | batches | 1 - CER against {against} |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for system, e in report["summary"].items():
        lines.append(
            f"| {system} | {e['speed_x']:.1f} | {e.get('speed_vs_funasr', 1.0):.2f}x | {e['cpu_s']:.1f} | "
            f"{e.get('cpu_vs_funasr', 1.0):.2f}x | {e['peak_gib']:.2f} | "
            f"{e.get('peak_vs_funasr', 1.0):.2f}x | {e['budget_gib']:.2f} | {e['load_s']:.1f} | {e['batches'] or '-'} | "
            + (f"{100 * e['agreement_with_funasr']:.1f} %" if "agreement_with_funasr" in e else "-") + " |")
    errors = report.get("encoder_relative_error")
    if errors:
        lines += ["", f"Encoder output relative error against torch fp32 (norm(diff)/norm(fp32), worst batch, "
                      f"{errors['segments']} segments, {errors['speech_s']:.0f} s of speech): "
                  + ", ".join(f"{name} {errors[name]:.2e}" for name, *_ in ERROR_ROWS if name in errors)]
    return "\n".join(lines) + "\n"


# (name, compute type, engine) of the encoders whose error against torch fp32 is measured
ERROR_ROWS = (("float32 onnx", "float32", "onnx"), ("bfloat16", "bfloat16", "torch"),
              ("int8 onnx", "int8", "onnx"), ("int8 torch", "int8", "torch"))


def encoder_errors(args) -> dict:
    """Relative error of each engine's and precision's encoder output against torch fp32, on real
    speech (in this process, after every timed run: an accuracy figure, not a timed one)."""
    from funasr_random_model import encoder_relative_error
    from tingxie.audio.decode import decode_audio
    from tingxie.backends.paraformer.backend import ParaformerBackend
    from tingxie.backends.paraformer.precision import cpu_has_bf16
    from tingxie.benchmark.spans import speech_spans_ms
    from tingxie.options import DecodeOptions

    os.environ["TINGXIE_CACHE_DIR"] = str(cache_dir(args))
    audio = decode_audio(str(input_path(args)))
    segments = [audio[a * 16: b * 16] for a, b in speech_spans_ms(audio)[:12]]

    def backend(compute_type, engine):
        options = tingxie_options(model_dir(args), compute_type, engine, threads=args.threads).model
        return ParaformerBackend(model_dir(args), "paraformer-large-random", options, DecodeOptions())

    reference = backend("float32", "torch")
    out = {"segments": len(segments), "speech_s": sum(len(s) for s in segments) / 16000}
    for name, compute_type, engine in ERROR_ROWS:
        if compute_type == "bfloat16" and not cpu_has_bf16():
            continue
        other = backend(compute_type, engine)
        out[name] = max(encoder_relative_error(reference, other, segments[i: i + 4]) for i in range(0, len(segments), 4))
        del other
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.prepare_only:
        prepare_now(args)
        return 0
    prepare(args)
    args.load_average_start = os.getloadavg()
    rounds = run_rounds(args)
    errors = None if args.no_errors or args.device != "cpu" else encoder_errors(args)
    report = summarise(args, rounds, errors)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report["texts"] = {system: record.text for system, record in rounds[-1].items()}  # the last round's
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    table = markdown(report)
    args.out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
