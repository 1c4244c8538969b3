"""Decoding any input to 16 kHz mono float32 chunks, and the rolling buffer segments are cut from."""
