"""Build FunASR models with random weights and save them in FunASR's model-directory format.

For tests and benchmarks: no weights can be downloaded here, so a model of the real
architecture is built through FunASR's own classes (from its template configuration), given
random weights, and written as config.yaml, model.pt, am.mvn and tokens.json, the files of a
downloaded ModelScope model. Anything that loads a downloaded model loads these the same way.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

# BiCifParaformer as in FunASR's funasr/models/bicif_paraformer/template.yaml: the architecture
# of iic/speech_paraformer-large-vad-punc_asr_nat-zh-cn-16k-common-vocab8404-pytorch.
PARAFORMER_LARGE: dict[str, Any] = {
    "model": "BiCifParaformer",
    "model_conf": {
        "ctc_weight": 0.0, "lsm_weight": 0.1, "length_normalized_loss": True,
        "predictor_weight": 1.0, "predictor_bias": 1, "sampling_ratio": 0.75,
    },
    "encoder": "SANMEncoder",
    "encoder_conf": {
        "output_size": 512, "attention_heads": 4, "linear_units": 2048, "num_blocks": 50,
        "dropout_rate": 0.1, "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.1,
        "input_layer": "pe", "pos_enc_class": "SinusoidalPositionEncoder", "normalize_before": True,
        "kernel_size": 11, "sanm_shfit": 0, "selfattention_layer_type": "sanm",
    },
    "decoder": "ParaformerSANMDecoder",
    "decoder_conf": {
        "attention_heads": 4, "linear_units": 2048, "num_blocks": 16, "dropout_rate": 0.1,
        "positional_dropout_rate": 0.1, "self_attention_dropout_rate": 0.1,
        "src_attention_dropout_rate": 0.1, "att_layer_num": 16, "kernel_size": 11, "sanm_shfit": 0,
    },
    "predictor": "CifPredictorV3",
    "predictor_conf": {
        "idim": 512, "threshold": 1.0, "l_order": 1, "r_order": 1, "tail_threshold": 0.45,
        "smooth_factor2": 0.25, "noise_threshold2": 0.01, "upsample_times": 3,
        "use_cif1_cnn": False, "upsample_type": "cnn_blstm",
    },
    "frontend": "WavFrontend",
    "frontend_conf": {
        "fs": 16000, "window": "hamming", "n_mels": 80, "frame_length": 25, "frame_shift": 10,
        "lfr_m": 7, "lfr_n": 6, "dither": 0.0,
    },
    "tokenizer": "CharTokenizer",
    "tokenizer_conf": {"unk_symbol": "<unk>", "split_with_space": True},
    "normalize": None,
}

# CT-Transformer punctuation, as FunASR's funasr/models/ct_transformer/template.yaml.
CT_PUNC: dict[str, Any] = {
    "model": "CTTransformer",
    "model_conf": {
        "ignore_id": 0, "embed_unit": 256, "att_unit": 256, "dropout_rate": 0.1,
        "punc_list": ["<unk>", "_", "，", "。", "？", "、"],
        "punc_weight": [1.0] * 6, "sentence_end_id": 3,
    },
    "encoder": "SANMEncoder",
    "encoder_conf": {
        "input_size": 256, "output_size": 256, "attention_heads": 8, "linear_units": 1024,
        "num_blocks": 4, "dropout_rate": 0.1, "positional_dropout_rate": 0.1,
        "attention_dropout_rate": 0.0, "input_layer": "pe", "pos_enc_class": "SinusoidalPositionEncoder",
        "normalize_before": True, "kernel_size": 11, "sanm_shfit": 0,
        "selfattention_layer_type": "sanm", "padding_idx": 0,
    },
    "tokenizer": "CharTokenizer",
    "tokenizer_conf": {"unk_symbol": "<unk>"},
}

# FSMN-VAD, as FunASR's funasr/models/fsmn_vad_streaming/template.yaml, with the streaming
# frontend (WavFrontendOnline) its inference needs, as the published model's configuration has.
FSMN_VAD: dict[str, Any] = {
    "model": "FsmnVADStreaming",
    "model_conf": {
        "sample_rate": 16000, "detect_mode": 1, "snr_mode": 0, "max_end_silence_time": 800,
        "max_start_silence_time": 3000, "do_start_point_detection": True,
        "do_end_point_detection": True, "window_size_ms": 200, "sil_to_speech_time_thres": 150,
        "speech_to_sil_time_thres": 150, "speech_2_noise_ratio": 1.0, "do_extend": 1,
        "lookback_time_start_point": 200, "lookahead_time_end_point": 100,
        "max_single_segment_time": 60000, "snr_thres": -100.0, "noise_frame_num_used_for_snr": 100,
        "decibel_thres": -100.0, "speech_noise_thres": 0.6, "fe_prior_thres": 0.0001,
        "silence_pdf_num": 1, "sil_pdf_ids": [0], "speech_noise_thresh_low": -0.1,
        "speech_noise_thresh_high": 0.3, "output_frame_probs": False, "frame_in_ms": 10,
        "frame_length_ms": 25,
    },
    "encoder": "FSMN",
    "encoder_conf": {
        "input_dim": 400, "input_affine_dim": 140, "fsmn_layers": 4, "linear_dim": 250,
        "proj_dim": 128, "lorder": 20, "rorder": 0, "lstride": 1, "rstride": 0,
        "output_affine_dim": 140, "output_dim": 248,
    },
    "frontend": "WavFrontendOnline",
    "frontend_conf": {
        "fs": 16000, "window": "hamming", "n_mels": 80, "frame_length": 25, "frame_shift": 10,
        "dither": 0.0, "lfr_m": 5, "lfr_n": 1,
    },
}


# CAM++ speaker embeddings, as FunASR's published iic/speech_campplus_sv_zh-cn_16k-common config.yaml
# (80 fbank bins in, a 192-d vector out); it computes its own features (no frontend).
CAMPLUS = {"model": "CAMPPlus", "model_conf": {"feat_dim": 80, "embedding_size": 192}}


def small_paraformer_config(d: int = 96, encoder_blocks: int = 3, decoder_blocks: int = 2) -> dict[str, Any]:
    """The Paraformer-large layout, shrunk: a few layers of width d, so tests stay fast."""
    config = copy.deepcopy(PARAFORMER_LARGE)
    config["encoder_conf"].update(output_size=d, linear_units=2 * d, num_blocks=encoder_blocks)
    config["decoder_conf"].update(linear_units=2 * d, num_blocks=decoder_blocks, att_layer_num=decoder_blocks)
    config["predictor_conf"]["idim"] = d
    return config


def small_punc_config(d: int = 64, blocks: int = 2) -> dict[str, Any]:
    config = copy.deepcopy(CT_PUNC)
    config["model_conf"].update(embed_unit=d, att_unit=d)
    config["encoder_conf"].update(input_size=d, output_size=d, attention_heads=4, linear_units=2 * d, num_blocks=blocks)
    return config


def chinese_vocab(size: int) -> list[str]:
    """Paraformer's vocabulary layout: <blank>, <s>, </s>, tokens, <unk> last."""
    common = "的一是了我不人在他有这个上们来到时大地为子中你说生国年着就那和要她出也得里后自以会家可下而过天去能对小多然于心学么之都好看起发当没成只如事把还用第样道想作种开美总从无情己面最女但现前些所同日手又行意动方期它头经长儿回位分爱老因很给名法间斯知世什两次使身者被高已亲其进此话常与活正感"
    tokens = list(dict.fromkeys(common))
    code = 0x4E00
    while len(tokens) < size - 4:
        ch = chr(code)
        if ch not in tokens:
            tokens.append(ch)
        code += 1
    return ["<blank>", "<s>", "</s>", *tokens[: size - 4], "<unk>"]


def write_cmvn(path: Path, means: np.ndarray, inv_stds: np.ndarray) -> None:
    """am.mvn in the Kaldi nnet text layout FunASR's load_cmvn reads (<AddShift>, <Rescale>)."""
    dim = len(means)
    def row(values: np.ndarray) -> str:
        return "<LearnRateCoef> 0 [ " + " ".join(f"{v:.6f}" for v in values) + " ]"
    path.write_text(
        f"<Nnet>\n<Splice> {dim} {dim}\n[ 0 ]\n<AddShift> {dim} {dim}\n{row(means)}\n"
        f"<Rescale> {dim} {dim}\n{row(inv_stds)}\n</Nnet>\n"
    )


def feature_statistics(config: dict[str, Any], audio: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and 1/std of the model's LFR features over some audio, for a plausible am.mvn."""
    from tingxie.backends.paraformer.importing import import_funasr

    import_funasr()
    from funasr.register import tables

    frontend_conf = {k: v for k, v in config["frontend_conf"].items() if k != "cmvn_file"}
    frontend = tables.frontend_classes.get(config["frontend"])(**frontend_conf)
    feats = []
    for samples in audio:
        wav = torch.from_numpy(np.asarray(samples, dtype=np.float32))[None]
        out, lens = frontend(wav, torch.tensor([wav.shape[1]]))
        feats.append(out[0, : int(lens[0])])
    stacked = torch.cat(feats).double()
    return (-stacked.mean(0)).float().numpy(), (1.0 / (stacked.std(0) + 1e-5)).float().numpy()


def save_model_dir(
    target: Path,
    config: dict[str, Any],
    tokens: list[str],
    *,
    audio_for_cmvn: list[np.ndarray] | None = None,
    seed: int = 0,
    confident: float = 1.0,
    alpha_bias: float | None = None,
) -> Path:
    """Build config's model with random weights through FunASR's classes and save it in target.

    confident scales the decoder's output projection, so the top token wins by a wide margin
    and float noise cannot flip a choice. alpha_bias, when given, sets the CIF predictor's output
    bias (about 1 token per 1/sigmoid(bias) encoder frames).
    """
    from tingxie.backends.paraformer.importing import import_funasr

    import_funasr()  # registers the model classes
    from funasr.register import tables

    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = copy.deepcopy(config)
    if config.get("tokenizer"):
        (target / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False))
    conf = dict(config.get("model_conf", {}))
    conf.update({k: v for k, v in config.items() if k != "model_conf"})
    conf["vocab_size"] = len(tokens) if tokens else -1
    if "frontend_conf" in config:
        fc = config["frontend_conf"]
        conf["input_size"] = fc["n_mels"] * fc.get("lfr_m", 1)
        if audio_for_cmvn:
            means, inv_stds = feature_statistics(config, audio_for_cmvn)
        else:
            means = np.zeros(conf["input_size"], np.float32)
            inv_stds = np.ones(conf["input_size"], np.float32)
        write_cmvn(target / "am.mvn", means, inv_stds)
    model = tables.model_classes.get(config["model"])(**conf)
    with torch.no_grad():
        decoder = getattr(model, "decoder", None)
        if confident != 1.0 and decoder is not None and getattr(decoder, "output_layer", None) is not None:
            decoder.output_layer.weight.mul_(confident)
        predictor = getattr(model, "predictor", None)
        if alpha_bias is not None and predictor is not None:
            predictor.cif_output.bias.fill_(alpha_bias)
    torch.save(model.state_dict(), target / "model.pt")
    (target / "config.yaml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
    return target


def relative_error(reference: torch.Tensor, other: torch.Tensor) -> float:
    """norm(other - reference) / norm(reference), computed in fp64."""
    reference, other = reference.double(), other.double()
    return float(torch.linalg.vector_norm(other - reference) / torch.linalg.vector_norm(reference))


def encoder_relative_error(reference, other, samples) -> float:
    """Relative error of other's encoder output against reference's (two Paraformer backends)
    on the same batch, over the frames that hold audio (padding excluded)."""
    with torch.inference_mode():
        ref, lens = reference.encode(samples)
        got, _ = other.encode(samples)
    keep = torch.arange(ref.size(1), device=ref.device)[None, :] < lens[:, None]
    return relative_error(ref[keep], got[keep])
