"""`tingxie ui`: the server with its web page, the page at / (the same options as `tingxie serve`)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    from ..server.command import add_server_arguments

    ui = subparsers.add_parser("ui", help="run the web page (the server, opened at /ui)")
    add_server_arguments(ui)


def run(args: argparse.Namespace) -> int:
    from ..server.command import run as run_server

    return run_server(args)
