"""The one place command-line arguments become options.

Every command that loads a model (`transcribe`, `serve`, `ui`, `bench`; Ray workers get the
options `transcribe` built) declares its model, decode, batch and VAD flags here, with one help
text each, and turns them into the frozen option dataclasses here. A flag means the same thing
in every command; a command only leaves out a group that cannot apply to it (`bench` sweeps
--batch-size-s and the budget itself).
"""

from __future__ import annotations

import argparse
import dataclasses

from tingxie.backends.paraformer.options import ENGINES, SILERO, ParaformerOptions
from tingxie.models.registry import DEFAULT_MODEL, EMBEDDED
from tingxie.options import (
    ACCELERATOR_MAX_BATCH,
    CPU_MAX_BATCH,
    BatchOptions,
    DecodeOptions,
    DiarizeOptions,
    ModelOptions,
    TranscribeOptions,
    VadOptions,
    parse_batch_size,
    parse_temperatures,
)

GROUPS = ("model", "decode", "batch", "vad", "speakers")


def add_option_arguments(parser: argparse.ArgumentParser, *, model_default: str = DEFAULT_MODEL,
                         device_default: str = "auto", compute_type_default: str = "default",
                         sweep: bool = False) -> None:
    """The model, decode, batch and VAD flags. sweep: the command varies --batch-size-s and the
    memory budget itself (bench), so those two are not declared here."""
    model = parser.add_argument_group("model")
    model.add_argument("-m", "--model", default=model_default,
                       help=f"{', '.join(EMBEDDED)}, a Whisper name (tiny, base, small, medium, large-v3, turbo, "
                            f"distil-large-v3, ...), a Hugging Face repo id, paraformer-zh, or a model directory "
                            f"(default: {model_default})")
    model.add_argument("--device", default=device_default, help=f"auto, cpu or cuda (default: {device_default})")
    model.add_argument("--compute-type", default=compute_type_default,
                       help="default (Whisper: int8 on CPU, float16 on CUDA; Paraformer: float32), int8, float16, "
                            f"bfloat16, float32, ... (default: {compute_type_default})")
    model.add_argument("--threads", type=int, default=0, help="CPU threads (default: the CPUs this process may use)")
    model.add_argument("--replicas", type=int, default=0,
                       help="Whisper on a CPU: model copies side by side, each taking a batch's windows one at a time "
                            "(default: one per thread, up to 4)")
    model.add_argument("--vad-model", default=SILERO,
                       help="speech detection for Paraformer: silero (default), fsmn-vad, or a FunASR model directory")
    model.add_argument("--punc-model", default=None,
                       help="Paraformer's punctuation model: ct-punc (default where present), ct-punc-c, or a FunASR "
                            "model directory")
    model.add_argument("--no-punc", action="store_true", help="no punctuation (Paraformer models)")
    model.add_argument("--engine", default="auto", choices=ENGINES,
                       help="what runs the Paraformer encoder and decoder on a CPU: onnx (ONNX Runtime; exported "
                            "once, cached), torch, or auto (onnx for float32/int8 where it exports; default)")

    decode = parser.add_argument_group("decoding")
    decode.add_argument("--language", default=None, help="language code (default: detect per window)")
    decode.add_argument("--task", default="transcribe", help="transcribe (default) or translate (to English; Whisper)")
    decode.add_argument("--beam-size", type=int, default=DecodeOptions.beam_size,
                        help=f"beam width (default: {DecodeOptions.beam_size})")
    decode.add_argument("--initial-prompt", default=None,
                        help="Whisper: text that comes before the audio (names, spellings, style)")
    decode.add_argument("--hotwords", default=None,
                        help="Whisper: words to expect, such as names and terms, given before each window")
    decode.add_argument("--temperature", default=",".join(f"{t:g}" for t in DecodeOptions.temperature),
                        help="Whisper: a temperature, or a comma list tried in turn on each window that fails the "
                             "guards below (default: %(default)s)")
    decode.add_argument("--compression-ratio-threshold", type=_optional_float,
                        default=DecodeOptions.compression_ratio_threshold,
                        help="Whisper: a window's text compressing better than this is a loop, decoded again; "
                             "'none' turns the test off (default: %(default)s)")
    decode.add_argument("--log-prob-threshold", type=_optional_float, default=DecodeOptions.log_prob_threshold,
                        help="Whisper: a mean token log-probability below this is a guess, decoded again; "
                             "'none' turns the test off (default: %(default)s)")
    decode.add_argument("--no-speech-threshold", type=_optional_float, default=DecodeOptions.no_speech_threshold,
                        help="Whisper: a window whose no-speech probability is above this, read without "
                             "confidence, is silence and gives no text; 'none' keeps every window (default: %(default)s)")

    batch = parser.add_argument_group("batching and memory")
    if not sweep:
        batch.add_argument("--batch-size-s", default="auto",
                           help="'auto' (default: batches sized to the memory budget) or seconds of audio per batch "
                                "(FunASR's batch_size_s)")
    batch.add_argument("--batch-threshold-s", type=float, default=None,
                       help="with --batch-size-s: a segment this long or longer is batched alone (default 60)")
    batch.add_argument("--max-batch-size", type=int, default=None,
                       help=f"most segments a batch (default: {CPU_MAX_BATCH} on CPU, {ACCELERATOR_MAX_BATCH} on GPU; "
                            "the memory budget may lower it)")
    if not sweep:
        batch.add_argument("--memory-budget", default=None,
                           help="total memory to stay under: 6GiB, 800MB, 50%% or 0.5 of free (default: 70%% of free)")

    speakers = parser.add_argument_group("speakers")
    speakers.add_argument("--diarize", action="store_true",
                          help="label who speaks: a speaker on every segment and word, a new cue where it changes "
                               "(offline: resemblyzer's voice encoder, run in NumPy)")
    speakers.add_argument("--speakers", type=int, default=None,
                          help="with --diarize: exactly this many speakers (default: found from the audio)")
    speakers.add_argument("--min-speakers", type=int, default=None, help="with --diarize: at least this many speakers")
    speakers.add_argument("--max-speakers", type=int, default=None, help="with --diarize: at most this many speakers")
    speakers.add_argument("--spk-model", default="resemblyzer",
                          help="with --diarize: the voice encoder: resemblyzer (default: embedded, no torch), or "
                               "FunASR's CAM++: cam++, a ModelScope id or a model directory (the funasr extra)")

    vad = parser.add_argument_group("speech detection")
    vad.add_argument("--vad-threshold", type=float, default=VadOptions.threshold,
                     help=f"speech probability threshold (default: {VadOptions.threshold})")
    vad.add_argument("--vad-min-speech", type=float, default=VadOptions.min_speech_s,
                     help=f"shortest speech kept, seconds (default: {VadOptions.min_speech_s})")
    vad.add_argument("--vad-min-silence", type=float, default=VadOptions.min_silence_s,
                     help=f"shortest silence that ends speech, seconds (default: {VadOptions.min_silence_s})")
    vad.add_argument("--vad-pad", type=float, default=VadOptions.speech_pad_s,
                     help=f"audio kept around each speech span, seconds (default: {VadOptions.speech_pad_s})")
    vad.add_argument("--max-segment", type=float, default=VadOptions.max_segment_s,
                     help=f"longest speech segment, seconds (default: {VadOptions.max_segment_s:g})")


def options_from_args(args: argparse.Namespace, *, timestamps: bool = True, sweep: bool = False) -> TranscribeOptions:
    """The options of parsed arguments, validated (OptionError with the flag's name on a bad value).

    timestamps: word times are wanted by the outputs (the transcribe command decides from -f).
    sweep: the arguments came from add_option_arguments(sweep=True): batching and budget are the
    caller's to set per run."""
    paraformer = ParaformerOptions(vad_model=args.vad_model, punc_model=args.punc_model,
                                   punctuate=not args.no_punc, engine=args.engine)
    batch_size_s = "auto" if sweep else args.batch_size_s
    diarize = DiarizeOptions(enabled=args.diarize, speakers=args.speakers, min_speakers=args.min_speakers,
                             max_speakers=args.max_speakers, speaker_model=args.spk_model)
    return TranscribeOptions(
        model=ModelOptions(name=args.model, device=args.device, compute_type=args.compute_type,
                           threads=args.threads, replicas=args.replicas, paraformer=paraformer),
        decode=DecodeOptions(language=args.language, task=args.task, beam_size=args.beam_size,
                             initial_prompt=args.initial_prompt or None, hotwords=args.hotwords or None,
                             temperature=parse_temperatures(args.temperature), timestamps=timestamps,
                             compression_ratio_threshold=args.compression_ratio_threshold,
                             log_prob_threshold=args.log_prob_threshold, no_speech_threshold=args.no_speech_threshold),
        vad=VadOptions(threshold=args.vad_threshold, min_speech_s=args.vad_min_speech,
                       min_silence_s=args.vad_min_silence, speech_pad_s=args.vad_pad, max_segment_s=args.max_segment,
                       merge_max_s=min(VadOptions.merge_max_s, args.max_segment)),
        batch=BatchOptions(batch_size_s=parse_batch_size(batch_size_s), batch_threshold_s=args.batch_threshold_s,
                           max_batch_size=args.max_batch_size,
                           memory_budget=None if sweep else args.memory_budget),
        diarize=diarize,
    )


def _optional_float(text: str) -> float | None:
    """A threshold flag's value: a number, or 'none' for no test."""
    if text.strip().lower() in ("none", "off"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', not {text!r}") from None


def with_batch(options: TranscribeOptions, **changes) -> TranscribeOptions:
    """The same options with other batching (bench's rows, the page's own choices)."""
    return dataclasses.replace(options, batch=dataclasses.replace(options.batch, **changes))
