"""Paraformer's recognition on a planned batch: FunASR's own model steps, as FunASR runs them.

The frontend (fbank, LFR, CMVN), encode, calc_predictor, cal_decoder_with_predictor, greedy
choice, then FunASR's timestamp and text post-processing. The one change to FunASR's inference:
BiCifParaformer computes CifPredictorV3's timestamp head (upsampling CNN and BLSTM) twice, once
in the predictor's forward (where it is dropped) and again in get_upsample_timestamp. Here the
first result is kept (captured from the head's output layer) and finished with the same
arithmetic, so timestamps are equal and the head runs once.

`ParaformerRecogniser` is the recognition half of ParaformerBackend (backend.py loads the model
and sets the attributes it reads: asr, onnx, precision, device, threads, ...).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Sequence

from tingxie.errors import TingxieError

try:
    import torch

    from tingxie.backends.paraformer.importing import import_funasr

    import_funasr()  # first, without the libraries only FunASR's other models use
    from funasr.models.transformer.utils.nets_utils import make_pad_mask
    from funasr.utils.load_utils import extract_fbank, load_audio_text_image_video
    from funasr.utils.postprocess_utils import sentence_postprocess
    from funasr.utils.timestamp_tools import ts_prediction_lfr6_standard
except ImportError as _error:  # the default install has no torch
    raise TingxieError(
        f"Paraformer models need the funasr extra (torch and FunASR): pip install 'tingxie[funasr]' ({_error})"
    ) from _error

from tingxie import SAMPLE_RATE
from tingxie.backends.paraformer.fire import fires, timestamp_inputs
from tingxie.backends.paraformer.parallel import map_side_by_side
from tingxie.backends.paraformer.precision import has_nan
from tingxie.segments import join_texts

log = logging.getLogger(__name__)

MIN_SAMPLES = 400  # one 25 ms fbank frame; anything shorter holds no speech to recognise
UPSAMPLE = 3  # FunASR slices the BiCif timestamp head at 3 x the encoder frames


@dataclass
class Recognised:
    """One segment's recognition: token ids, words and their times in seconds from its start."""

    tokens: list[int] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    times: list[tuple[float, float]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return join_texts(self.words)


class ParaformerRecogniser:
    """Recognition of a batch of 16 kHz float32 arrays (see the module docstring)."""

    def _set_threads(self) -> None:
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def recognise(self, samples: Sequence) -> list[Recognised]:
        """Recognise a batch of 16 kHz float32 arrays (one padded batch through the model)."""
        self._set_threads()
        out = [Recognised() for _ in samples]
        keep = [i for i, s in enumerate(samples) if len(s) >= MIN_SAMPLES]
        if not keep:
            return out
        with torch.inference_mode():
            rows = self._run([samples[i] for i in keep], reduced=True)
            if rows is None:  # a NaN in reduced precision: this batch again in fp32
                self.precision.nan_fallbacks += 1
                log.warning("NaN in %s outputs; running the batch again in float32", self.compute_type)
                rows = self._run([samples[i] for i in keep], reduced=False)
        for i, rec in zip(keep, rows):
            out[i] = rec
        return out

    def features(self, samples: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
        """FunASR's own feature path for a batch: padded fbank+LFR+CMVN features and lengths."""
        frontend = self.asr.frontend
        audio = load_audio_text_image_video(list(samples), fs=frontend.fs, audio_fs=SAMPLE_RATE)
        speech, lengths = extract_fbank(audio, data_type="sound", frontend=frontend)
        return speech.to(self.device), lengths.to(self.device)

    def encode(self, samples: Sequence, *, reduced: bool = True,
               side_by_side: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        speech, lengths = self.features(samples)
        if self.onnx is not None:
            return self.onnx.encoder(speech, lengths, side_by_side=side_by_side)
        with self.precision.reduced(reduced):
            encoder_out, encoder_lens = self.asr.model.encode(speech, lengths)
        if isinstance(encoder_out, tuple):
            encoder_out = encoder_out[0]
        return encoder_out.float(), encoder_lens

    def encode_items(self, samples: Sequence, *, reduced: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Each item through the encoder alone, the outputs stacked with zeros after each end.

        On a CPU a padded batch buys the encoder nothing (its matrix products already run near
        the core's peak on one segment) and pays for every padded frame; what batching does buy
        is the rest of the model: the timestamp head's BLSTM and the decoder run one step of
        small products per frame or token, which a batch turns into larger ones. With
        item_workers > 1, items whose lengths balance run side by side, each on one thread (the
        precision's autocast is entered inside encode, so in each worker); through ONNX Runtime
        see funasr_support.onnx_parts.
        """
        workers = self.item_workers
        if self.onnx is not None and self.onnx.encoder.side_by_side_session is None:
            workers = 1  # fp32 ONNX: one session on all threads, items one after another
        outs = map_side_by_side(lambda item: self.encode([item], reduced=reduced, side_by_side=True), samples,
                                workers, cost=len, plan=self.onnx is None)
        lens = torch.cat([n for _, n in outs])
        longest = int(lens.max())
        stacked = outs[0][0].new_zeros(len(outs), longest, outs[0][0].size(-1))
        for i, (out, n) in enumerate(outs):
            stacked[i, : int(n[0])] = out[0, : int(n[0])]
        return stacked, lens

    def _run(self, samples: Sequence, *, reduced: bool) -> list[Recognised] | None:
        model = self.asr.model
        self.precision.active = reduced
        if self.encode_alone and self.mask_padding and len(samples) > 1:
            encoder_out, encoder_lens = self.encode_items(samples, reduced=reduced)
        else:
            encoder_out, encoder_lens = self.encode(samples, reduced=reduced)
        if reduced and self.precision.guarded and has_nan(encoder_out):
            return None  # before the predictor, whose token counts a NaN would wreck
        if self.mask_padding and len(samples) > 1:
            # The encoder leaves values in padded frames. The predictor's convolution reads one
            # frame past each item's end and its tail step integrates one frame there, so with
            # those values a segment's tokens depend on what it was batched with; zeros are what
            # a segment run alone sees (FunASR's ConstantPad1d and its appended tail frame).
            pad = make_pad_mask(encoder_lens, maxlen=encoder_out.size(1)).to(encoder_out.device)
            encoder_out = encoder_out.masked_fill(pad[..., None], 0.0)
        head_logits: list[torch.Tensor] = []
        head = getattr(model.predictor, "cif_output2", None) if hasattr(model, "calc_predictor_timestamp") else None
        hook = head.register_forward_hook(lambda _m, _i, o: head_logits.append(o)) if head is not None else None
        if self._timestamp_lstm is not None and self.mask_padding:
            # the BLSTM reads the upsampled frames: upsample_times per encoder frame
            self._timestamp_lstm.lengths = encoder_lens * getattr(model.predictor, "upsample_times", UPSAMPLE)
        try:
            embeds, token_num, _alphas, _peaks = model.calc_predictor(encoder_out, encoder_lens)[:4]
        finally:
            if hook is not None:
                hook.remove()
            if self._timestamp_lstm is not None:
                self._timestamp_lstm.lengths = None
        token_num = token_num.round().long()
        if int(token_num.max()) < 1:
            return [Recognised() for _ in samples]
        if self.onnx is not None:
            scores = self.onnx.decoder(encoder_out, encoder_lens, embeds, token_num)  # item by item
        else:
            with self.precision.reduced(reduced):
                decoder_out, _ = model.cal_decoder_with_predictor(encoder_out, encoder_lens, embeds, token_num)
            decoder_out = decoder_out.float()
            if reduced and self.precision.guarded and has_nan(decoder_out):
                return None
            scores = [decoder_out[i, : token_num[i]] for i in range(len(samples))]
        us_alphas = us_peaks = None
        if head is not None:
            if head_logits:
                us_alphas, us_peaks = self._upsampled_timestamps(head_logits[-1], encoder_out, encoder_lens, token_num)
            else:  # a predictor that does not run its timestamp head in forward
                _, _, us_alphas, us_peaks = model.calc_predictor_timestamp(encoder_out, encoder_lens, token_num)
                us_alphas, us_peaks = us_alphas.float().cpu(), us_peaks.float().cpu()
        return [
            self._decode_item(scores[i], int(encoder_lens[i]),
                              None if us_alphas is None else (us_alphas[i], us_peaks[i]))
            for i in range(len(samples))
        ]

    def _upsampled_timestamps(self, logits, encoder_out, encoder_lens, token_num):
        """CifPredictorV3.get_upsample_timestamp from its head's output, computed in forward.
        On the CPU: the fire loop and the per-item timestamp steps after it are frame by frame
        (funasr_support.fire)."""
        p = self.asr.model.predictor
        mask = (~make_pad_mask(encoder_lens, maxlen=encoder_out.size(1))[:, None, :]).to(encoder_out.device)
        alphas2 = torch.sigmoid(logits)
        alphas2 = torch.nn.functional.relu(alphas2 * p.smooth_factor2 - p.noise_threshold2)
        mask2 = mask.repeat(1, p.upsample_times, 1).transpose(-1, -2).reshape(alphas2.shape[0], -1)
        alphas2 = (alphas2 * mask2.unsqueeze(-1)).squeeze(-1)
        alphas2 *= (token_num / alphas2.sum(-1))[:, None].repeat(1, alphas2.size(1))
        alphas2 = alphas2.float().cpu()
        return alphas2, fires(alphas2, p.threshold - 1e-4)

    def _decode_item(self, am_scores, encoder_len: int, upsampled) -> Recognised:
        model, tokenizer = self.asr.model, self.asr.tokenizer
        if am_scores.size(0) == 0:
            return Recognised()
        ids = [t for t in am_scores.argmax(dim=-1).tolist() if t not in (model.eos, model.sos, model.blank_id)]
        if tokenizer is None:
            return Recognised(tokens=ids)
        tokens = tokenizer.ids2tokens(ids)
        if upsampled is None:
            _, words = sentence_postprocess(tokens)
            return Recognised(ids, list(words), [])
        alphas, peaks = timestamp_inputs(upsampled[0][: encoder_len * UPSAMPLE],
                                         upsampled[1][: encoder_len * UPSAMPLE], tokens)
        _, stamps = ts_prediction_lfr6_standard(alphas, peaks, copy.copy(tokens), vad_offset=0)
        _, stamps, words = sentence_postprocess(tokens, stamps)
        times = [(s / 1000, e / 1000) for s, e in stamps] if len(stamps) == len(words) else []
        return Recognised(ids, list(words), times)
