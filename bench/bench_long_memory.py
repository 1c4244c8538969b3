"""Flat memory: a 3-hour input against the 11-minute real_en_long, through the real CLI.

    .venv/bin/python bench/bench_long_memory.py --hours 3 --runs 3

Builds the long input once (not committed) from real_en_long's 44 pieces, reshuffled for every
pass with fresh 0.4-1.5 s silences, written as FLAC in streaming fashion. Then runs
`tingxie transcribe` (all four formats, checkpoint and partial files on, as a user would) on
each input, interleaved short/long, every run a fresh process whose peak RSS (VmHWM) is polled
from outside. The goal (issue 4): long peak <= 1.15x short peak, speed within 10 %.
Writes OUT.json and OUT.md and prints the table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from tingxie import SAMPLE_RATE as RATE
from tingxie.audio.decode import decode_audio
from tingxie.memory.resources import watch_peak_rss

ROOT = Path(__file__).resolve().parent.parent
SHORT = ROOT.parent / "shared" / "audio" / "long" / "real_en_long.flac"


def build_long_input(short: Path, hours: float, target: Path, seed: int = 0) -> float:
    """Write `hours` of audio made of short's pieces (reshuffled each pass) to target; its length in s."""
    audio = decode_audio(str(short))
    layout = json.loads(short.with_suffix(".segments.json").read_text(encoding="utf-8"))
    pieces = [audio[int(p["start"] * RATE):int((p["start"] + p["dur"]) * RATE)] for p in layout]
    rng = np.random.default_rng(seed)
    container = av.open(str(target), "w", format="flac")
    stream = container.add_stream("flac", rate=RATE, layout="mono")
    written, wanted = 0, int(hours * 3600 * RATE)
    while written < wanted:
        for index in rng.permutation(len(pieces)):
            silence = np.zeros(int(rng.uniform(0.4, 1.5) * RATE), np.float32)
            for block in (pieces[index], silence):
                samples = (np.clip(block, -1, 1) * 32767).astype(np.int16)
                frame = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
                frame.sample_rate = RATE
                for packet in stream.encode(frame):
                    container.mux(packet)
                written += len(samples)
            if written >= wanted:
                break
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    return written / RATE


def run_cli(audio: Path, args: argparse.Namespace, workdir: Path) -> dict:
    """One `tingxie transcribe` in a fresh process; wall time and peak RSS measured from outside."""
    out = Path(tempfile.mkdtemp(prefix="out-", dir=workdir))
    command = [sys.executable, "-m", "tingxie.cli.main", "transcribe", str(audio), "-o", str(out), "-q",
               "-m", args.model, "--compute-type", args.compute_type, "--restart"]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    code, peak = watch_peak_rss(process)
    wall = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"tingxie failed on {audio}: {process.stderr.read().decode(errors='replace')[-2000:]}")
    result = json.loads((out / f"{audio.stem}.json").read_text(encoding="utf-8"))
    stats = result["stats"]
    return {"process_s": wall, "peak_rss_bytes": peak, "audio_s": stats["audio_duration_s"],
            "wall_s": stats["wall_time_s"], "segments": len(result["segments"]), "batches": stats["batches"]}


def summarise(name: str, runs: list[dict]) -> dict:
    wall = statistics.median(r["wall_s"] for r in runs)
    return {"name": name, "runs": len(runs), "audio_s": runs[0]["audio_s"], "median_wall_s": wall,
            "speed": runs[0]["audio_s"] / wall, "peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs),
            "segments": runs[0]["segments"], "each": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", type=Path, default=SHORT)
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3, help="runs of the short input")
    parser.add_argument("--long-runs", type=int, default=1, help="runs of the long input")
    parser.add_argument("--model", default="whisper-tiny.en")
    parser.add_argument("--compute-type", default="int8")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "long_memory")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "long_memory")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    long_input = args.work / f"real_en_{args.hours:g}h.flac"
    if not long_input.exists():
        print(f"building {long_input} ...", file=sys.stderr, flush=True)
        partial = long_input.with_suffix(".partial.flac")
        build_long_input(args.short, args.hours, partial)
        partial.rename(long_input)
    started = datetime.datetime.now().astimezone()
    load_before = os.getloadavg()
    run_cli(args.short, args, args.work)  # unmeasured: fills the memory-profile cache and page cache
    short_runs, long_runs = [], []
    for round_ in range(max(args.runs, args.long_runs)):
        for audio, runs, wanted in ((args.short, short_runs, args.runs), (long_input, long_runs, args.long_runs)):
            if round_ < wanted:
                runs.append(run_cli(audio, args, args.work))
                r = runs[-1]
                print(f"{audio.name}: {r['audio_s']:.0f} s audio in {r['wall_s']:.1f} s, "
                      f"peak {r['peak_rss_bytes'] / 2**20:.0f} MiB", file=sys.stderr, flush=True)
    short, long = summarise(args.short.name, short_runs), summarise(long_input.name, long_runs)
    ratios = {"peak_rss": long["peak_rss_bytes"] / short["peak_rss_bytes"], "speed": long["speed"] / short["speed"]}
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "started": started.isoformat(timespec="seconds"),
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(), "model": args.model,
              "compute_type": args.compute_type, "rows": [short, long], "ratios": ratios}
    table = "\n".join([
        "| input | audio | runs | median wall | speed | peak RSS |",
        "| --- | --- | --- | --- | --- | --- |",
        *(f"| {r['name']} | {r['audio_s'] / 60:.1f} min | {r['runs']} | {r['median_wall_s']:.1f} s | "
          f"{r['speed']:.1f}x | {r['peak_rss_bytes'] / 2**20:.0f} MiB |" for r in (short, long)),
        "",
        f"long/short: peak RSS {ratios['peak_rss']:.3f}x (goal <= 1.15), speed {ratios['speed']:.3f}x "
        f"(goal within 0.90-1.10)",
        "",
    ])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
