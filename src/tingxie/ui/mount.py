"""Put the page on the server's FastAPI app: its jobs glue, the page runner, the Gradio mount."""

from __future__ import annotations

from pathlib import Path

from tingxie.server.service import TranscriptionService
from tingxie.server.store import JobStore

PATH = "/ui"


def page_mount(bench_results: Path | None = None, *, root_redirect: bool = False):
    """A mount callback for server.runner: adds the page at /ui (and / -> /ui when asked)."""

    def mount(app, service: TranscriptionService) -> None:
        import gradio as gr
        from fastapi.responses import RedirectResponse

        from tingxie.models.registry import EMBEDDED
        from tingxie.ui.file_guard import PageFileGuard
        from tingxie.ui.jobs import PageJobs
        from tingxie.ui.layout import build_page
        from tingxie.ui.page_runner import PageRunner

        db = Path(service.config.db_path)
        runner = PageRunner(JobStore(db.with_name(db.stem + "-page.db")),
                            max_duration_s=service.config.max_duration_s, base=service.transcriber.options)
        jobs = PageJobs(service, runner, service.config.uploads.with_name("page-uploads"))
        runner.start()
        service.stop_hooks.append(runner.stop)
        models = list(dict.fromkeys([service.model_name, *EMBEDDED]))
        page = build_page(jobs, models, bench_results)
        # Gradio's check that a file came from its upload folder is skipped on a mounted page:
        # this one refuses a client-given path before Gradio sees it (file_guard.py).
        app.add_middleware(PageFileGuard, prefix=PATH)
        gr.mount_gradio_app(app, page, path=PATH, ssr_mode=False, footer_links=[],
                            max_file_size=service.config.max_upload_bytes)
        if root_redirect:
            app.add_api_route("/", lambda: RedirectResponse(f"{PATH}/"), include_in_schema=False)

    return mount
