"""`tingxie ui`: the server with its web page, the page at / (the same options as `tingxie serve`)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from tingxie.server.command import add_server_arguments

    ui = subparsers.add_parser("ui", help="run the web page (the server, opened at /ui)")
    add_server_arguments(ui)
    ui.set_defaults(no_ui=False)  # the page is what `tingxie ui` is for


def run(args: argparse.Namespace) -> int:
    from tingxie.server.command import run as run_server

    return run_server(args)
