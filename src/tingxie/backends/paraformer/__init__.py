"""Support for FunASR models (Paraformer, FSMN-VAD, CT-Transformer punctuation).

Only `options` may be imported without the `funasr` extra (torch, funasr); every other module
here imports torch and is loaded lazily by the Paraformer backend.
"""
