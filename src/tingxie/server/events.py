"""stream=true: a request's text as server-sent events in OpenAI's shape, as segments finish.

Each event is one `data:` line of JSON: `transcript.text.delta` with the text the newly
finished segments add (only the leading run of finished segments counts: text leaves in time
order), then `transcript.text.done` with the whole text and the usage. The deltas join to
exactly the non-streamed text: that text joins the pieces in order, and joining more pieces
only appends to it. With include[]=logprobs each delta carries its tokens' log-probabilities
(logprobs.py) and the done event all of them. With response_format diarized_json, the segments
with their speakers follow the deltas as `transcript.text.segment` events, all at the end (the
speakers are known only once the whole audio is clustered), before done. A failed request ends with OpenAI's error object; a client that hangs up
cancels its work.
"""

from __future__ import annotations

import asyncio
import json
from typing import AsyncIterator, Callable

from tingxie.segments import join_texts
from tingxie.server.api_errors import ApiError
from tingxie.server.formats import usage
from tingxie.server.logprobs import logprob_entries
from tingxie.server.work import Work

POLL_S = 0.1  # how often the stream looks for finished segments (batches take longer)


def leading_results(work: Work) -> list:
    """The results of the finished segments that no unfinished one precedes, in order (call
    under the scheduler's lock). Segments are produced in index order, so any not yet produced
    come after every one queued or running."""
    open_indices = [segment.index for segment in work.pending] + list(work.in_flight)
    first_open = min(open_indices, default=None)
    return [work.finished[i].result for i in sorted(work.finished) if first_open is None or i < first_open]


async def text_events(work: Work, lock, cancel, segments: Callable[[], list[dict]] | None = None,
                      ) -> AsyncIterator[bytes]:
    """The SSE body of a streamed request. lock: the scheduler's; cancel(): end the work (a
    client that disconnects closes this generator, and its work is cancelled then). segments():
    a diarized request's transcript.text.segment events, sent after the deltas, before done:
    speakers are known only once all its audio is clustered (server/speakers.py)."""
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()
    work.add_done_callback(lambda _: loop.call_soon_threadsafe(ended.set))
    sent, sent_logprobs = "", []
    try:
        while True:
            with lock:
                terminal, ready = work.terminal, leading_results(work)
            text = join_texts(piece.text for result in ready for piece in result.pieces)
            if work.state == "succeeded" or not terminal:
                if len(text) > len(sent):
                    delta = {"type": "transcript.text.delta", "delta": text[len(sent):]}
                    if work.options.logprobs:  # include[]=logprobs: the new text's tokens
                        logprobs = logprob_entries(ready)
                        delta["logprobs"], sent_logprobs = logprobs[len(sent_logprobs):], logprobs
                    yield _event(delta)
                    sent = text
            if terminal:
                break
            try:
                await asyncio.wait_for(ended.wait(), POLL_S)
            except asyncio.TimeoutError:
                pass
        if work.state == "succeeded":
            for segment in segments() if segments is not None else ():
                yield _event(segment)
            yield _event({"type": "transcript.text.done", "text": sent, "usage": usage(work.total_s or work.decoded_s)}
                         | ({"logprobs": sent_logprobs} if work.options.logprobs else {}))
        else:
            error = work.error or ApiError(499, "the request was cancelled", code="cancelled")
            yield _event(error.body())
    finally:
        if not work.terminal:  # the client went away (the generator was closed): its work stops
            cancel()


def _event(data: dict) -> bytes:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
