"""Paraformer through FunASR: its own classes and model code, run on the planner's batches.

FunASR's AutoModel runs one segment at a time on CPU (inference_with_vad sets the batch to 0
there) with 4 threads wherever it runs. This backend loads the model once (memory-mapped, see
loading.py), chooses the engine (engine_choice.py), takes a whole planned batch of
variable-length segments and recognises it (recogniser.py), and provides the pipeline stages
FunASR runs around the model: FSMN-VAD where asked, CT-punc over the whole recording's text,
or each segment's own text where recordings are interleaved.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Sequence

# first: the guarded torch and FunASR imports, one clear error without the funasr extra
from tingxie.backends.paraformer.recogniser import ParaformerRecogniser, Recognised
from tingxie.backends.base import Backend, is_out_of_memory, out_of_memory
from tingxie.backends.paraformer.engine_choice import load_onnx_parts
from tingxie.backends.paraformer.loading import FunasrModel, load_funasr_model
from tingxie.backends.paraformer.options import SILERO
from tingxie.backends.paraformer.precision import Precision, resolve_compute_type, resolve_device
from tingxie.backends.paraformer.punctuation import Punctuator, PunctuationStream
from tingxie.backends.paraformer.timestamp_head import pack_timestamp_lstm
from tingxie.memory.cpu import release_freed_memory
from tingxie.memory.resources import usable_cpus
from tingxie.options import DecodeOptions, ModelOptions
from tingxie.planner.shapes import InputShape, ShapeRule
from tingxie.segments import AudioSegment, SegmentResult, TextSegment, join_texts

log = logging.getLogger(__name__)

MAX_ITEM_S = 60.0  # FSMN-VAD's longest segment (max_single_segment_time), as FunASR runs it


class ParaformerBackend(Backend, ParaformerRecogniser):
    shape = InputShape(ShapeRule.VARIABLE, max_item_s=MAX_ITEM_S)

    def __init__(self, model_dir: Path, name: str, model: ModelOptions, decode: DecodeOptions, *,
                 punctuator: Punctuator | None | bool = True):
        self.name = name
        self.model_path = Path(model_dir)
        self.device = resolve_device(model.device)
        self.compute_type = resolve_compute_type(model.compute_type, self.device)
        self.threads = model.threads or usable_cpus()  # never FunASR's default of 4
        self._set_threads()
        self._decode = decode
        self.options = model.paraformer
        # deterministic features: dither would add random noise to every fbank
        self.asr: FunasrModel = load_funasr_model(self.model_path, self.device,
                                                  overrides={"frontend_conf": {"dither": 0.0}})
        self.precision = Precision(self.compute_type, self.device)
        self.onnx = load_onnx_parts(model.paraformer.engine, device=self.device, compute_type=self.compute_type,
                                    model_path=self.model_path, checkpoint=self.asr.checkpoint, threads=self.threads)
        # torch's encoder and decoder never run beside ONNX Runtime's: nothing of them to quantize
        self.precision.prepare(self.asr.model, self.asr.checkpoint,
                               parts=() if self.onnx is not None else ("encoder", "decoder"))
        self._timestamp_lstm = pack_timestamp_lstm(getattr(self.asr.model, "predictor", None))
        release_freed_memory()
        # True: padded encoder frames are zeroed, so a segment's result does not depend on its
        # batch (it equals FunASR's one-at-a-time result); False: exactly FunASR's batched model.inference.
        self.mask_padding = True
        # CPU: the encoder runs each item of a batch alone (see encode_items); a GPU gains from
        # the padded batch.
        self.encode_alone = self.device == "cpu"
        # CPU: up to how many of those items run side by side, one intra-op thread each, where
        # their lengths balance (funasr_support.parallel); 1: one after another on all threads.
        # The rest of the model stays one batch on all threads (as sub-batches side by side it
        # measured slower).
        self.item_workers = self.threads if self.device == "cpu" else 1
        self.punctuator = self._load_punctuator() if punctuator is True else (punctuator or None)
        self._fsmn = None

    @property
    def engine(self) -> str:
        return "onnx" if self.onnx is not None else "torch"

    def memory_probe(self):
        """On CUDA its memory is torch's allocator, whose own statistics the probe reads."""
        from tingxie.memory.probes import probe_for

        return probe_for(self.device, engine="torch")

    @property
    def execution(self) -> str:
        """What runs the model, part of the memory profile's key."""
        return "onnx encoder, decoder item by item" if self.onnx is not None else "torch encoder and decoder"

    # --- what runs around the model in FunASR's pipeline -----------------------------------
    def speech_detector(self):
        """FSMN-VAD's streamed detector where --vad-model asks for it; None: tingxie's Silero."""
        if self.options.vad_model == SILERO:
            return None
        if self._fsmn is None:
            from tingxie.backends.paraformer.fsmn_vad import FsmnVad
            from tingxie.models.funasr_hub import resolve_funasr_model

            self._fsmn = FsmnVad(resolve_funasr_model(self.options.vad_model, "VAD model"), self.device, MAX_ITEM_S)
        return self._fsmn.detector()

    def text_stream(self) -> PunctuationStream | None:
        """Punctuation over the whole recording's text, fed with word pieces; None without a model."""
        return self.punctuator.stream() if self.punctuator is not None else None

    def _load_punctuator(self) -> Punctuator | None:
        from tingxie.errors import ModelNotFoundError
        from tingxie.models.funasr_hub import resolve_funasr_model

        opts = self.options
        if not opts.punctuate:
            return None
        try:
            path = resolve_funasr_model(opts.punc_model or "ct-punc", "punctuation model")
        except ModelNotFoundError as error:
            if opts.punc_model is not None:
                raise
            log.warning("no punctuation: %s", error)
            return None
        return Punctuator(path, self.device)

    # --- the Backend protocol -------------------------------------------------------------
    def transcribe_batch(self, batch: Sequence[AudioSegment], decode=None) -> list[SegmentResult]:
        # decode: never per batch (per_batch_decode is False); the options it was loaded with apply
        try:
            recognised = self.recognise([item.samples for item in batch])
        except (RuntimeError, MemoryError) as error:
            if is_out_of_memory(error):
                raise out_of_memory(error) from error
            raise
        return [
            SegmentResult(item.index, self._pieces(item, rec), language=self._decode.language,
                          tokens=tuple(rec.tokens))
            for item, rec in zip(batch, recognised)
        ]

    def _pieces(self, item: AudioSegment, rec: Recognised) -> tuple[TextSegment, ...]:
        if not rec.words:
            return ()
        if not rec.times:  # no word times (plain Paraformer): the segment is the piece
            return (TextSegment(round(item.start, 3), round(item.end, 3), rec.text),)
        # a packed segment (speech spans joined without their gaps) maps its own times to the file's
        return tuple(TextSegment(round(item.absolute(s), 3), round(item.absolute(e), 3), word)
                     for word, (s, e) in zip(rec.words, rec.times))

    def segment_text(self, result: SegmentResult) -> SegmentResult:
        """The text stage for a segment on its own, where the whole recording's text is not
        punctuated at once (the server interleaves recordings; no punctuation model): its word
        pieces punctuated and cut into sentences, or joined into one piece."""
        pieces = result.pieces
        if not pieces:
            return result
        if self.punctuator is not None:  # a one-word segment too: CT-punc ends its text with a mark
            return dataclasses.replace(result, pieces=tuple(self.punctuator.sentences([result])))
        if len(pieces) == 1:
            return result
        return dataclasses.replace(result, pieces=(
            TextSegment(pieces[0].start, pieces[-1].end, join_texts(p.text for p in pieces)),))

