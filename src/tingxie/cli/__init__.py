"""The `tingxie` command line: argument parsing into options, and the transcribe command."""
