"""The ``vaelens`` command line (typer)."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="vaelens",
    help="Mechanistic interpretability of VAEs through causal interventions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def main() -> None:
    """Console-script entry point."""
    app()
