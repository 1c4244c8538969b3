"""The `funasr` case kind: FunASR's own AutoModel.generate on a Paraformer model directory.

No FunASR VAD model can be downloaded here, so its VAD step is a stand-in that returns the
Silero spans tingxie's VAD finds (rounded to whole ms), computed at load: AutoModel then runs
its own inference_with_vad on them (sorting, batch_size_s grouping, or one segment at a time on
CPU, as FunASR does). The VAD's time is therefore not in this case's wall time.
"""

from __future__ import annotations

from tingxie.benchmark.spec import CaseOutput, CaseSpec, Run

FUNASR_DEFAULT_BATCH_SIZE_S = 300  # AutoModel.inference_with_vad's default


def given_spans_vad(spans_ms: list[list[int]]):
    """A module standing in for FunASR's VAD model: every call returns spans_ms."""
    import torch

    class GivenSpans(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))  # FunASR reads a parameter's device

        def inference(self, data_in, key=None, **kwargs):
            return [{"key": key[0], "value": [list(s) for s in spans_ms]}], {}

    return GivenSpans()


def funasr_batches(spans_ms: list[list[int]], batch_size_s: float, device: str):
    """The batches FunASR forms from these spans: on CPU it sets the budget to 0 (one segment a
    batch); elsewhere its batch_size_s grouping, which tingxie's planner reproduces exactly."""
    from tingxie.planner import PlanItem, plan_funasr
    from tingxie.planner.shapes import InputShape, ShapeRule

    items = [PlanItem(i, (end - start) / 1000) for i, (start, end) in enumerate(spans_ms)]
    return plan_funasr(items, 0 if device == "cpu" else batch_size_s, None, InputShape(ShapeRule.VARIABLE, 1e9))


def load_funasr(spec: CaseSpec) -> Run:
    from funasr import AutoModel

    from tingxie import SAMPLE_RATE
    from tingxie.audio.decode import decode_audio
    from tingxie.memory.resources import usable_cpus
    from tingxie.benchmark.spans import speech_spans_ms

    audio = decode_audio(spec.audio)
    spans_ms = speech_spans_ms(audio)
    model = AutoModel(model=spec.model, device=spec.device, ncpu=spec.threads or usable_cpus(), disable_update=True,
                      disable_pbar=True, log_level="ERROR")
    model.vad_model = given_spans_vad(spans_ms)
    batch_size_s = FUNASR_DEFAULT_BATCH_SIZE_S if spec.batch_size_s is None else spec.batch_size_s
    plan = funasr_batches(spans_ms, batch_size_s, spec.device)

    def run() -> CaseOutput:
        [result] = model.generate(input=audio, batch_size_s=batch_size_s)
        return CaseOutput(result["text"], len(audio) / SAMPLE_RATE, {
            "batches": len(plan.batches), "segments": len(spans_ms), "padding_waste": plan.padding_waste,
            "oom_retries": None,
        })

    return run
