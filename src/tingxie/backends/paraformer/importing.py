"""Importing FunASR's package without the libraries only its other models use.

FunASR's package __init__ imports every one of its submodules (`import_submodules`), and with
them libraries that only other models need: scikit-learn (speaker clustering), numba (pulled in
through audio helpers), transformers (its LLM-based models). Paraformer, FSMN-VAD and CT-punc use
none of them. Left out of the first import, they cost a tingxie process nothing: resident memory
after `import torch, funasr` went from 536 to 367 MB, and the fp32 Paraformer-large benchmark's
peak RSS down by the same (docs/benchmarks.md). A FunASR module that cannot be imported without
them is recorded and skipped by FunASR itself, as it does for any missing optional library; the
libraries stay importable afterwards.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from types import ModuleType

LEFT_OUT = ("sklearn", "numba", "transformers")


class _LeaveOut:
    """A meta-path finder, present only while FunASR's package is first imported, and only for
    the thread importing it (another thread's imports meanwhile are its own business)."""

    def __init__(self, names):
        self.names = frozenset(names)
        self.thread = threading.get_ident()

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names and threading.get_ident() == self.thread:
            raise ModuleNotFoundError(f"{name} is left out of FunASR's import by tingxie", name=name)
        return None


def import_funasr() -> ModuleType:
    """FunASR's package, imported once without LEFT_OUT (those already imported stay as they
    are). Its notice about ffmpeg on standard output is dropped: tingxie's standard output is
    the transcript."""
    if "funasr" in sys.modules:
        return sys.modules["funasr"]
    finder = _LeaveOut(name for name in LEFT_OUT if name not in sys.modules)
    sys.meta_path.insert(0, finder)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import funasr
    finally:
        sys.meta_path.remove(finder)
    return funasr
