"""Decode + VAD in a background thread (prefetch.py) against inline, paired runs.

    .venv/bin/python bench/bench_prefetch.py --pairs 3

Each run is a fresh process transcribing real_en_long with whisper-tiny.en int8 (the defaults
otherwise); the 'inline' runs patch prefetching out. Prints every wall time, the medians and the
median of the per-pair ratios (inline / prefetch: above 1 means prefetching is faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

AUDIO = Path(__file__).resolve().parents[2] / "shared" / "audio" / "long" / "real_en_long.flac"
CHILD = r'''
import sys
import tingxie.engine.pipeline as pipeline
from tingxie.options import ModelOptions, TranscribeOptions
if sys.argv[1] == "inline":
    pipeline.prefetched = lambda items, depth: items
transcriber = pipeline.Transcriber(TranscribeOptions(model=ModelOptions(name=sys.argv[3], compute_type="int8")))
print(transcriber.transcribe(sys.argv[2]).stats.wall_seconds)
'''


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--audio", type=Path, default=AUDIO)
    parser.add_argument("--model", default="whisper-tiny.en")
    args = parser.parse_args()
    walls: dict[str, list[float]] = {"inline": [], "prefetch": []}
    for _ in range(args.pairs):
        for mode in walls:
            out = subprocess.run([sys.executable, "-c", CHILD, mode, str(args.audio), args.model],
                                 capture_output=True, text=True, check=True)
            walls[mode].append(float(out.stdout.split()[-1]))
            print(f"{mode}: {walls[mode][-1]:.2f} s (load average {os.getloadavg()[0]:.2f})", flush=True)
    ratio = statistics.median(a / b for a, b in zip(walls["inline"], walls["prefetch"]))
    print(f"median inline {statistics.median(walls['inline']):.2f} s, prefetch {statistics.median(walls['prefetch']):.2f} s, "
          f"paired inline/prefetch {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
