"""Who said what (--diarize): voice vectors of short speech windows, clustered into speakers.

weights.py reads resemblyzer's pretrained encoder without torch; features.py and encoder.py run it
in NumPy; windows.py embeds segments as they stream by; clustering.py finds the speakers;
timeline.py turns labelled windows into turns; assign.py puts a speaker on every word and segment;
stage.py is the stage the Transcriber runs.
"""
