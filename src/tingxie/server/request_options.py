"""A request's own decode and VAD options, resolved against what the server's model was loaded with.

A request may ask for a language, a task, a prompt, a temperature and word times, or for
server_vad settings; each is honoured where the backend can decode batch by batch with other
options, and refused with a 400 naming the request's value where it cannot.
"""

from __future__ import annotations

import dataclasses

from tingxie.backends.base import Backend
from tingxie.engine.pipeline import Transcriber
from tingxie.errors import OptionError
from tingxie.options import DecodeOptions, VadOptions
from tingxie.server.api_errors import bad_request
from tingxie.server.work import RequestOptions


def request_decode(options: RequestOptions, loaded: DecodeOptions, backend: Backend) -> DecodeOptions | None:
    """A request's decode options: the server's, with its language, task, prompt and
    temperature (0, as OpenAI means it, is the server's temperatures: 0 then higher where the
    decoding guards fail; another is decoded at that temperature only); None where the backend decodes only with the options it was loaded with (then
    the request must ask for those)."""
    english_only = not backend.multilingual
    if options.logprobs and not backend.token_logprobs:
        raise bad_request(f"include logprobs: model {backend.name!r} gives no token log-probabilities; "
                          "ask a Whisper model or leave include out", param="include[]", code="unsupported_include")
    if options.task == "translate" and english_only:
        raise bad_request(f"model {backend.name!r} is English-only: it cannot translate; ask a multilingual model",
                          param="model", code="unsupported_task")
    language = options.language or loaded.language
    if english_only:
        if language not in (None, "en"):
            raise bad_request(f"language {options.language!r}: model {backend.name!r} is English-only",
                              param="language", code="unsupported_language")
        language = loaded.language  # "en" and none are the same to an English-only model
    try:
        wanted = dataclasses.replace(
            loaded, language=language, task=options.task,
            initial_prompt=options.prompt if options.prompt is not None else loaded.initial_prompt,
            temperature=loaded.temperature if not options.temperature else options.temperature,
            timestamps=loaded.timestamps or "word" in options.timestamp_granularities,
            token_logprobs=options.logprobs)
    except OptionError as error:
        raise bad_request(str(error).replace("--", ""), param="language") from None
    if backend.per_batch_decode:
        return wanted
    asked, started = dataclasses.asdict(wanted), dataclasses.asdict(loaded)
    for name, flag in (("language", "language"), ("task", "task"), ("initial_prompt", "prompt"),
                       ("temperature", "temperature"), ("timestamps", "timestamp_granularities[]")):
        if asked[name] != started[name]:
            model = backend.name
            raise bad_request(f"{flag} {asked[name]!r} cannot be honoured: model {model!r} decodes "
                              f"with the options the server started with ({flag} {started[name]!r})",
                              param=flag, code=f"unsupported_{flag.rstrip('[]')}")
    return None


def request_vad(options: RequestOptions, transcriber: Transcriber) -> VadOptions | None:
    """server_vad's settings over the server's VAD options; None: the server's own."""
    settings = options.chunking_strategy
    if not settings:
        return None
    if transcriber.backend.speech_detector() is not None:
        raise bad_request(f"chunking_strategy server_vad: model {transcriber.backend.name!r} uses its own speech "
                          "detector; send 'auto'", param="chunking_strategy")
    vad = transcriber.vad_options
    changes = {}
    if "threshold" in settings:
        changes["threshold"] = settings["threshold"]
    if "prefix_padding_ms" in settings:
        changes["speech_pad_s"] = settings["prefix_padding_ms"] / 1000
    if "silence_duration_ms" in settings:
        changes["min_silence_s"] = settings["silence_duration_ms"] / 1000
    try:
        return dataclasses.replace(vad, **changes)
    except OptionError as error:
        raise bad_request(f"chunking_strategy server_vad {settings}: {error}", param="chunking_strategy") from None
