"""Rewrite the absolute paths in committed claims-lab records as paths relative to the repository root.

Usage (from the repository root)::

    python benchmarks/relative_record_paths.py docs/results/ablation_DRIVE docs/results/ablation_BUSI-100 \
        --root /work/main

Every string of ``results*.jsonl``, ``ablation_config.json`` and ``ablation.json`` that is an absolute path
inside the repository root (or inside one of the ``--root`` checkouts of the same repository that wrote
the records) becomes relative to it; a path beside the root (``<root>/../shared/data/DRIVE``) becomes
``../shared/data/DRIVE``. Files are rewritten only when something changed; run ``--report-only`` after it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from s2mnet.bench.ablation.records import relative_path  # noqa: E402


def relativise(value: Any, roots: list[Path]) -> Any:
    """``value`` with every absolute path string inside it made relative (JSON-like structures)."""
    if isinstance(value, str):
        flag, sep, rest = value.partition("=")
        if sep and flag.startswith("--"):
            return f"{flag}={relative_path(rest, roots)}"
        return relative_path(value, roots)
    if isinstance(value, list):
        return [relativise(v, roots) for v in value]
    if isinstance(value, dict):
        return {k: relativise(v, roots) for k, v in value.items()}
    return value


def rewrite(path: Path, roots: list[Path]) -> bool:
    """Rewrite one JSON or JSON-lines file; whether it changed."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        lines = [
            json.dumps(relativise(json.loads(line), roots)) for line in text.splitlines() if line.strip()
        ]
        new = "\n".join(lines) + "\n"
    else:
        new = json.dumps(relativise(json.loads(text), roots), indent=2) + "\n"
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="study folders")
    parser.add_argument(
        "--root", action="append", default=[], type=Path, help="another checkout that wrote them"
    )
    args = parser.parse_args(argv)
    roots = [ROOT, *args.root]
    for folder in args.folders:
        for path in sorted([*folder.glob("results*.jsonl"), *folder.glob("*.json")]):
            if rewrite(path, roots):
                print(f"rewritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
