"""tingxie (听写): long-audio transcription that fits the memory a machine has."""

__version__ = "0.1.0"

SAMPLE_RATE = 16_000  # every stage after decoding works on 16 kHz mono float32

__all__ = ["SAMPLE_RATE", "__version__"]
