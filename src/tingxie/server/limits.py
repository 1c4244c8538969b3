"""The limit errors, worded once: what was too large and what the server accepts."""

from __future__ import annotations

from tingxie.memory.sizes import format_bytes
from tingxie.server.api_errors import ApiError

MULTIPART_SLACK_BYTES = 64 * 1024  # form fields and part headers around the file


def duration_error(seconds: float, limit_s: float, *, at_least: bool = False) -> ApiError:
    qualifier = "at least " if at_least else ""
    return ApiError(413, f"audio is {qualifier}{seconds:.1f} s long; this server accepts at most {limit_s:g} s",
                    code="audio_too_long")


def upload_error(limit_bytes: int) -> ApiError:
    return ApiError(413, f"upload is larger than this server accepts ({format_bytes(limit_bytes)})", param="file",
                    code="upload_too_large")


def queue_full_error(retry_after_s: int, limit: int) -> ApiError:
    return ApiError(429, f"the server is busy: {limit} requests and jobs are already queued; retry later",
                    code="queue_full", headers={"Retry-After": str(retry_after_s)})


def memory_full_error(retry_after_s: int, figures, reserve_bytes: int) -> ApiError:
    """figures: the server's memory_account.MemoryFigures when the request was refused."""
    return ApiError(429, f"the server is busy: its memory budget of {format_bytes(figures.budget)} holds the loaded "
                         f"models and a batch ({format_bytes(figures.models + figures.batch)}) and the decoded audio of "
                         f"the requests and jobs already admitted ({format_bytes(figures.reserved)}); this one may "
                         f"need {format_bytes(reserve_bytes)} more; retry later",
                    code="memory_full", headers={"Retry-After": str(retry_after_s)})
