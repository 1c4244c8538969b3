"""The web page (Gradio): mounted in `tingxie serve` at /ui, or run alone as `tingxie ui`."""
