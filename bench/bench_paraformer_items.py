"""Paraformer-large on CPU: a batch's items one after another on all threads, or side by side.

    .venv/bin/python bench/bench_paraformer_items.py --segments 4 --rounds 3

The random Paraformer-large of bench_paraformer.py (built there, into --work) encodes a batch of
real segments of zh_long.flac (its Silero spans) two ways, alternating within one process:
`sequential`, each item alone with torch's intra-op threads (--threads), and `side-by-side`,
--threads items at once with one intra-op thread each where their lengths balance
(funasr_support.parallel plans which). The CIF
predictor (with its timestamp BLSTM) and the decoder are each timed as one batch on all threads
against --threads interleaved sub-batches side by side. Wall and process CPU seconds per round.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_paraformer import DEFAULT_AUDIO  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--audio", type=Path, default=DEFAULT_AUDIO)
    p.add_argument("--work", type=Path, default=Path("/tmp/tingxie-bench-paraformer"))
    p.add_argument("--segments", type=int, default=4)
    p.add_argument("--first", type=int, default=0, help="index of the first span used")
    p.add_argument("--spans", type=int, nargs="+", help="indices of the spans used (instead of --first/--segments)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="default: the usable CPUs")
    return p.parse_args(argv)


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None) -> int:
    import torch

    from tingxie.audio.decode import decode_audio
    from tingxie.benchmark.spans import speech_spans_ms
    from tingxie.backends.paraformer.backend import ParaformerBackend
    from tingxie.backends.paraformer.options import ParaformerOptions
    from tingxie.backends.paraformer.parallel import map_side_by_side
    from tingxie.options import DecodeOptions, ModelOptions

    args = parse_args(argv)
    model_dir = args.work / "paraformer-large-random"
    audio = decode_audio(str(args.audio))
    spans = speech_spans_ms(audio)
    chosen = [spans[i] for i in args.spans] if args.spans else spans[args.first: args.first + args.segments]
    samples = [audio[a * 16: b * 16] for a, b in chosen]
    options = ModelOptions(name=str(model_dir), device="cpu", threads=args.threads,
                           paraformer=ParaformerOptions(punctuate=False))
    backend = ParaformerBackend(model_dir, "paraformer-large-random", options, DecodeOptions())
    workers = backend.threads
    model = backend.asr.model
    print(f"{len(samples)} segments, {[round(len(s) / 16000, 1) for s in samples]} s; threads {workers}",
          file=sys.stderr)

    def encode(item_workers):
        backend.item_workers = item_workers
        return backend.encode_items(samples)

    def predictor(encoder_out, lens):  # CIF predictor with its timestamp head (BLSTM)
        return model.calc_predictor(encoder_out, lens)[:2]

    def decoder(encoder_out, lens, embeds, token_num):
        embeds = embeds[:, : int(token_num.round().max())]  # a sub-batch's own longest
        return model.cal_decoder_with_predictor(encoder_out, lens, embeds, token_num.round().long())[0]

    def split(fn, encoder_out, lens, *more):  # interleaved sub-batches side by side
        parts = [list(range(k, len(samples), workers)) for k in range(workers)]
        return map_side_by_side(lambda idx: fn(encoder_out[idx, : int(lens[idx].max())], lens[idx],
                                               *(m[idx] for m in more)),
                                parts, workers, cost=lambda idx: int(lens[idx].sum()))

    names = ("encode sequential", "encode side-by-side", "predictor one batch", "predictor sub-batches",
             "decoder one batch", "decoder sub-batches")
    rows = {name: [] for name in names}
    with torch.inference_mode():
        encode(1)  # warm-up
        for _ in range(args.rounds):
            (seq_out, seq_lens), *t = timed(lambda: encode(1))
            rows["encode sequential"].append(t)
            (par_out, _), *t = timed(lambda: encode(workers))
            rows["encode side-by-side"].append(t)
            (embeds, token_num), *t = timed(lambda: predictor(seq_out, seq_lens))
            rows["predictor one batch"].append(t)
            _, *t = timed(lambda: split(predictor, seq_out, seq_lens))
            rows["predictor sub-batches"].append(t)
            _, *t = timed(lambda: decoder(seq_out, seq_lens, embeds, token_num))
            rows["decoder one batch"].append(t)
            _, *t = timed(lambda: split(decoder, seq_out, seq_lens, embeds, token_num))
            rows["decoder sub-batches"].append(t)
            print("round walls: " + ", ".join(f"{name} {runs[-1][0]:.2f}" for name, runs in rows.items()),
                  file=sys.stderr, flush=True)
        diff = float((seq_out - par_out).abs().max())
    print(f"max |sequential - side-by-side| encoder output: {diff:.2e}; torch threads after: {torch.get_num_threads()}")
    for name, runs in rows.items():
        walls, cpus = [w for w, _ in runs], [c for _, c in runs]
        print(f"{name:22s} wall {' '.join(f'{w:6.2f}' for w in walls)} s (median {statistics.median(walls):.2f}); "
              f"process CPU {' '.join(f'{c:6.2f}' for c in cpus)} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
