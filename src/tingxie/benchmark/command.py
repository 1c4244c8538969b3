"""`tingxie bench`: the seeds' table for any model and input.

A sweep of FunASR-style `batch_size_s` values and tingxie's `auto` under one or more memory
budgets, with optional baselines (faster-whisper's BatchedInferencePipeline, FunASR's
AutoModel), each run in a fresh child process, `--runs` times round-robin; medians of wall
time, speed, peak RSS (the child's VmHWM read from outside), batches, padding waste and OOM
retries are printed and written as STEM.json, STEM.md and STEM.png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
from pathlib import Path

from tingxie.errors import OptionError, TingxieError

USAGE_ERROR = 2


def register(subparsers) -> None:
    from tingxie.cli.arguments import add_option_arguments

    bench = subparsers.add_parser("bench", help="benchmark batch_size_s values against auto under memory budgets",
                                  description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_argument("audio", help="the audio file to transcribe in every run")
    bench.add_argument("--batch-size-s", default="60,300,600",
                       help="fixed rows: batch_size_s values, FunASR semantics, comma-separated ('none': no fixed rows)")
    bench.add_argument("--budget", default=None,
                       help="auto rows: memory budgets, comma-separated (6GiB, 800MB, 50%%, default; 'none': no "
                            "auto row); default: one auto row at tingxie's default budget")
    bench.add_argument("--baseline", action="append", default=[],
                       help="fw-batched:4,8 (faster-whisper BatchedInferencePipeline batch sizes) or funasr:300 "
                            "(FunASR AutoModel batch_size_s; needs the funasr extra); repeatable")
    bench.add_argument("--runs", type=int, default=3, help="runs of every row; the table gives medians (default 3)")
    bench.add_argument("--reference", type=Path, default=None, help="reference transcript: adds WER to every row")
    bench.add_argument("-f", "--format", choices=("all", "txt"), default="all",
                       help="what the tingxie rows produce, as `tingxie transcribe -f` would: all (word-aligned "
                            "times, the default) or txt (text only, no align pass: the baselines' granularity)")
    bench.add_argument("-o", "--out", default="tingxie-bench", help="path stem: writes STEM.json, STEM.md, STEM.png")
    bench.add_argument("--timeout", type=float, default=1800, help="seconds a run may take before it is killed")
    # the tingxie rows' model, decode and VAD options, as `tingxie transcribe` takes them; the rows
    # themselves vary --batch-size-s and --budget (--max-batch-size caps the auto rows)
    add_option_arguments(bench, model_default="whisper-tiny.en", device_default="cpu", compute_type_default="int8",
                         sweep=True)


def options_from_args(args: argparse.Namespace):
    from tingxie.benchmark.sweep import SweepOptions, parse_baseline, parse_batch_sizes_s, parse_budgets
    from tingxie.cli.arguments import options_from_args as transcribe_options

    if not Path(args.audio).is_file():
        raise OptionError(f"{args.audio}: no such file")
    if args.reference is not None and not args.reference.is_file():
        raise OptionError(f"--reference {args.reference}: no such file")
    options = SweepOptions(
        audio=str(args.audio), model=args.model, compute_type=args.compute_type, device=args.device,
        batch_sizes_s=parse_batch_sizes_s(args.batch_size_s), budgets=parse_budgets(args.budget),
        baselines=tuple(parse_baseline(text) for text in args.baseline), runs=args.runs,
        beam_size=args.beam_size, threads=args.threads, max_batch_size=args.max_batch_size,
        timestamps=args.format != "txt",
        tingxie_options=transcribe_options(args, timestamps=args.format != "txt", sweep=True).to_dict(),
    )
    _check_model(options)
    return options


def _check_model(options) -> None:
    """Unknown models and baselines that cannot run this model fail here, before any child."""
    from tingxie.models.registry import resolve_model

    family = resolve_model(options.model).family  # raises ModelNotFoundError, a one-line error
    for baseline in options.baselines:
        if baseline.kind == "fw-batched" and family != "whisper":
            raise OptionError(f"--baseline fw-batched needs a Whisper model, not the {family} model {options.model}")
        if baseline.kind == "funasr" and family != "paraformer":
            raise OptionError(f"--baseline funasr needs a FunASR Paraformer model directory, not {options.model}")
    if options.device not in ("cpu", "cuda"):
        raise OptionError(f"--device must be cpu or cuda, not {options.device!r}")


def read_reference(path: Path) -> str:
    """A transcript file: its lines (one per piece, as the shared references are) joined."""
    return " ".join(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def device_description(device: str) -> str:
    from tingxie.memory.resources import usable_cpus
    from tingxie.benchmark.report import cpu_model

    return f"{device}; CPU {cpu_model()}, {usable_cpus()} usable CPUs"


def run(args: argparse.Namespace, argv: list[str]) -> int:
    from tingxie.writers.atomic import atomic_write_text
    from tingxie.benchmark import bench_report
    from tingxie.benchmark.runner import CaseFailed, CaseRejected, run_cases
    from tingxie.benchmark.sweep import build_rows, goals, rows_from_results

    try:
        options = options_from_args(args)
    except TingxieError as error:
        print(f"tingxie: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    reference = read_reference(args.reference) if args.reference else None
    row_specs = build_rows(options)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def progress(round_, spec, record):
        print(f"tingxie bench: run {round_}/{options.runs} {spec.name}: {record.wall_s:.1f} s", file=sys.stderr,
              flush=True)

    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    try:
        results = run_cases([row.case for row in row_specs], options.runs, reference=reference, on_run=progress,
                            timeout_s=args.timeout)
    except CaseRejected as error:
        print(f"tingxie: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except CaseFailed as error:
        print(f"tingxie: error: a benchmark run failed: {error}", file=sys.stderr)
        return 1
    rows = rows_from_results(row_specs, results)
    goal_list = goals(rows)
    meta = {
        "command": shlex.join(["tingxie", *argv]),
        "model": options.model,
        "compute_type": options.compute_type,
        "audio": options.audio,
        "audio_s": results[0].audio_s,
        "device": device_description(options.device),
        "runs": options.runs,
        "reference": str(args.reference) if args.reference else None,
        "started": started.isoformat(timespec="seconds"),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    table = bench_report.markdown(meta, rows, goal_list)
    atomic_write_text(out.with_name(out.name + ".json"),
                      json.dumps(bench_report.document(meta, rows, goal_list), indent=1) + "\n")
    atomic_write_text(out.with_name(out.name + ".md"), table)
    png = out.with_name(out.name + ".png")
    bench_report.plot(rows, png, f"{Path(options.audio).name}, {options.model} {options.compute_type}")
    print(table)
    print(f"tingxie bench: wrote {out}.json, {out}.md, {png}", file=sys.stderr)
    return 0
