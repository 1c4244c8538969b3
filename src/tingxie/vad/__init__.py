"""Speech detection: Silero VAD (ONNX, no torch) and the detector that turns its frame probabilities into spans."""
