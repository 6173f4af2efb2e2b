"""``s2m models``: the registered model names, each with what it is."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    """Add this command to the ``s2m`` sub-command parser."""
    models = commands.add_parser("models", help="list the available models with a one-line description")
    models.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print ``name  description`` for every registered model."""
    from s2mnet.models import describe_models

    described = describe_models()
    width = max(map(len, described))
    print("\n".join(f"{name:<{width}}  {text}" for name, text in described.items()))
    return 0
