"""The Gradio page: upload or record, choose, start; live progress, transcript, files, figures.

The page holds no work of its own: a job id (also in the URL, ?job=...) names a job kept by
the server, and a timer re-reads its view every second. Closing and reopening the page, or
picking from the recent jobs, shows the job where it is. Handlers catch everything and show
it in the status line in plain words.
"""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr

from tingxie.ui import bench_panel
from tingxie.ui.file_guard import PathRefused, uploaded_file
from tingxie.ui.jobs import AUTO_LANGUAGE, PageChoices, PageError, PageJobs
from tingxie.writers import FORMATS
from tingxie.ui.view import figures, result_files, status_line, timed_text

log = logging.getLogger("tingxie.ui")
LANGUAGES = (AUTO_LANGUAGE, "en", "zh", "ja", "ko", "de", "fr", "es", "it", "pt", "ru", "ar", "hi")
SET_URL_JOB = """(job) => { const url = new URL(window.location.href);
  if (job) { url.searchParams.set('job', job); } else { url.searchParams.delete('job'); }
  window.history.replaceState(null, '', url); }"""


def build_page(jobs: PageJobs, models: list[str], bench_results: Path | None = None) -> gr.Blocks:
    # Gradio keeps uploads in its own cache; the job has its copy, so an hour of it is plenty.
    with gr.Blocks(title="tingxie", analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown("# tingxie\nLong-audio transcription. Jobs run on the server: you may close this page "
                    "and come back (the job id is in the address).")
        shown = gr.State("")  # the job id whose finished result is on the page
        with gr.Tab("Transcribe"):
            with gr.Row():
                with gr.Column(scale=2):
                    upload = gr.File(label="Audio or video file", elem_id="upload-file")
                    record = gr.Audio(sources=["microphone"], type="filepath", label="… or record",
                                      elem_id="record")
                    model = gr.Dropdown(models, value=jobs.server_model, label="Model", elem_id="model")
                    language = gr.Dropdown(list(LANGUAGES), value=AUTO_LANGUAGE, allow_custom_value=True,
                                           label="Language (auto: detect)", elem_id="language")
                    batching = gr.Textbox("auto", label="Batching: auto, or seconds of audio per batch",
                                          elem_id="batching")
                    budget = gr.Textbox("", label="Memory budget (e.g. 2GiB, 50%; empty: automatic)",
                                        elem_id="budget")
                    with gr.Row():
                        diarize = gr.Checkbox(False, label="Label speakers", elem_id="diarize")
                        speakers = gr.Number(0, precision=0, minimum=0, label="Speakers (0: find out)",
                                             elem_id="speakers")
                    prompt = gr.Textbox("", label="Prompt (names, terms, the style to follow; empty: none)",
                                        elem_id="prompt")
                    with gr.Row():
                        temperature = gr.Slider(0.0, 1.0, value=0.0, step=0.1, elem_id="temperature",
                                                label="Temperature (0: exact, higher only where decoding fails)")
                        word_times = gr.Checkbox(False, label="Word timestamps (in the JSON file)",
                                                 elem_id="word-timestamps")
                    with gr.Row():
                        start = gr.Button("Start", variant="primary", elem_id="start")
                        cancel = gr.Button("Cancel", elem_id="cancel")
                with gr.Column(scale=3):
                    status = gr.Markdown(status_line(None), elem_id="status")
                    with gr.Row():
                        job = gr.Textbox(label="Job", interactive=False, elem_id="job-id", scale=2)
                        recent = gr.Dropdown([], label="Recent jobs", elem_id="recent", scale=3)
                    transcript = gr.Textbox(label="Transcript", lines=12, interactive=False, elem_id="transcript")
                    with gr.Row():
                        downloads = [gr.DownloadButton(f"Download {fmt}", interactive=False, elem_id=f"download-{fmt}")
                                     for fmt in FORMATS]
                    results = gr.Markdown("", elem_id="figures")
        with gr.Tab("Benchmarks"):
            bench_file = gr.File(label="tingxie bench output (JSON)", file_types=[".json"], elem_id="bench-file")
            bench_status = gr.Markdown("", elem_id="bench-status")
            bench_table = gr.Dataframe(label="Cases", interactive=False, elem_id="bench-table")
            bench_plot = gr.ScatterPlot(x=bench_panel.PLOT_X, y=bench_panel.PLOT_Y, color="kind",
                                        tooltip="all",
                                        label="Speed against peak memory", elem_id="bench-plot")
        timer = gr.Timer(1.0)

        def on_start(file, recording, model, language, batching, budget, diarize, speakers, prompt, temperature,
                     word_times):
            source = file or recording
            if not source:
                return "Choose a file or record first.", gr.skip(), gr.skip()
            try:
                source = str(uploaded_file(source))  # never a path the client named (file_guard.py)
                choices = PageChoices.parse(model, language, batching, budget, diarize, speakers, prompt=prompt,
                                            temperature=temperature, word_timestamps=word_times)
                name = Path(file).name if file else "recording.wav"
                job_id = jobs.submit(source, name, choices)
            except (PageError, PathRefused) as error:
                return f"**Error:** {error}", gr.skip(), gr.skip()
            except Exception as error:  # a bug: logged in full, shown in one line
                log.exception("starting a page job failed")
                return f"**Error:** the job could not start ({type(error).__name__})", gr.skip(), gr.skip()
            return status_line(jobs.view(job_id)), job_id, gr.update(choices=jobs.recent(), value=job_id)

        def refresh(job_id, shown_id):
            """Every second: the job's status; its transcript and files once, when it is done."""
            try:
                view = jobs.view(job_id)
                if view is None:
                    return (status_line(None) if not job_id else f"**Error:** there is no job {job_id}",
                            "", "", shown_id, *([gr.skip()] * len(FORMATS)))
                status_text, numbers = status_line(view), figures(view)
                if view["state"] != "succeeded":
                    empty = [gr.update(value=None, interactive=False)] * 4
                    return status_text, "", numbers, "", *empty
                if shown_id == job_id:
                    return status_text, gr.skip(), numbers, shown_id, *([gr.skip()] * len(FORMATS))
                done = jobs.transcript(job_id)
                if done is None:  # the live view says done a moment before the final row is written
                    return status_text, gr.skip(), numbers, shown_id, *([gr.skip()] * len(FORMATS))
                files = result_files(done, job_id, view["filename"])
                buttons = [gr.update(value=str(files[fmt]), interactive=True) for fmt in FORMATS]
                return status_text, timed_text(done), numbers, job_id, *buttons
            except Exception as error:
                log.exception("refreshing job %s failed", job_id)
                return (f"**Error:** cannot show this job ({type(error).__name__})", gr.skip(), gr.skip(), shown_id,
                        *([gr.skip()] * len(FORMATS)))

        def on_load(request: gr.Request):
            job_id = (request.query_params.get("job") or "") if request else ""
            bench = show_bench(str(bench_results)) if bench_results else (gr.skip(),) * 3
            choices = jobs.recent()
            picked = job_id if job_id in (value for _, value in choices) else None
            return (job_id, gr.update(choices=choices, value=picked), *bench)

        def show_bench(path):
            if not path:
                return gr.skip(), gr.skip(), gr.skip()
            try:
                loaded = bench_panel.load_bench(path)
            except bench_panel.BenchFileError as error:
                return f"**Error:** {error}", None, None
            points = bench_panel.plot_frame(loaded)
            x_lim, y_lim = bench_panel.axis_limits(points)
            return loaded.summary(), bench_panel.table(loaded), gr.update(value=points, x_lim=x_lim, y_lim=y_lim)

        def show_uploaded_bench(file):
            """The Benchmarks tab's upload: only a file the page received is read."""
            if not file:
                return gr.skip(), gr.skip(), gr.skip()
            try:
                return show_bench(str(uploaded_file(file)))
            except PathRefused as error:
                return f"**Error:** {error}", None, None

        def on_cancel(job_id):
            if job_id:
                jobs.cancel(job_id)

        live = [status, transcript, results, shown, *downloads]
        start.click(on_start, [upload, record, model, language, batching, budget, diarize, speakers, prompt,
                               temperature, word_times],
                    [status, job, recent]) \
            .then(None, [job], None, js=SET_URL_JOB)
        timer.tick(refresh, [job, shown], live, show_progress="hidden")
        job.change(refresh, [job, shown], live, show_progress="hidden")
        recent.input(lambda picked: picked or "", [recent], [job]).then(None, [job], None, js=SET_URL_JOB)
        cancel.click(on_cancel, [job], None)
        bench_file.upload(show_uploaded_bench, [bench_file], [bench_status, bench_table, bench_plot])
        page.load(on_load, None, [job, recent, bench_status, bench_table, bench_plot])
    return page
