"""Time to the first streamed text vs the whole answer, through `tingxie serve` and the openai client.

    flock /tmp/tingxie-bench.lock .venv/bin/python bench/bench_server_stream.py [--model whisper-tiny.en] [--reps 3]

The input is 2 minutes of real English speech: the 17 clips of tests/data, twice, with pauses.
Each repetition asks once without streaming and once with stream=true; the table gives the
wall time of the first, and the first delta and the done event of the second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from long_audio import english_pieces, joined, write_flac  # noqa: E402

from tingxie.engine.pipeline import Transcriber  # noqa: E402
from tingxie.options import ModelOptions, TranscribeOptions  # noqa: E402
from tingxie.server.config import ServerConfig  # noqa: E402
from tingxie.server.runner import running  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="whisper-tiny.en")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="tingxie-stream-"))
    pieces = english_pieces()
    path = write_flac(folder / "two-minutes.flac", joined(pieces + pieces, seed=5))
    transcriber = Transcriber(TranscribeOptions(model=ModelOptions(name=args.model)))
    whole, first, done = [], [], []
    with running(transcriber, ServerConfig(db_path=folder / "jobs.db")) as (url, _):
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=600)
        for _ in range(args.reps):
            started = time.perf_counter()
            with open(path, "rb") as audio:
                client.audio.transcriptions.create(file=audio, model="whisper-1")
            whole.append(time.perf_counter() - started)
            started, first_s = time.perf_counter(), None
            with open(path, "rb") as audio:
                for event in client.audio.transcriptions.create(file=audio, model="whisper-1", stream=True):
                    if first_s is None and event.type == "transcript.text.delta":
                        first_s = time.perf_counter() - started
            first.append(first_s)
            done.append(time.perf_counter() - started)
    print(f"| model | audio | whole answer s | first delta s | stream done s |")
    print(f"| --- | --- | --- | --- | --- |")
    print(f"| {args.model} | {len(pieces) * 2} clips, 2 min | {statistics.median(whole):.2f} | "
          f"{statistics.median(first):.2f} | {statistics.median(done):.2f} |  (medians of {args.reps})")


if __name__ == "__main__":
    main()
