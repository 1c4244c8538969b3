"""The streamed engine: segments -> planned windows -> executed batches -> a transcript (the Transcriber)."""
