"""Benchmark harness: run measured transcription cases in fresh child processes and report them.

cases   what a case is (CaseSpec) and how each kind loads and transcribes
case    the child process entry point: `python -m tingxie.benchmark.case SPEC_JSON RESULT_PATH`
runner  start the child, time it, read its peak RSS from outside (wait4), score it
report  Markdown table and JSON of the results
stages  an in-process time split of one tingxie run (decode, VAD, features, encode, generate)
funasr_case   the `funasr` case kind: FunASR's AutoModel.generate on a Paraformer directory
sweep         `tingxie bench`: its options, the cases of a sweep, and the rows' medians (pure)
bench_report  `tingxie bench`'s JSON, Markdown and PNG
command       `tingxie bench`'s command line
"""
