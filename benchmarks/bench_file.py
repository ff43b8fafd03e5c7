"""bench.json at the checkout's root: each benchmark writes its sections, keeping the others."""

from __future__ import annotations

import json
from pathlib import Path

PATH = Path(__file__).resolve().parents[1] / "bench.json"


def record(section: str, result, echo: bool = True) -> None:
    """Write `result` as `section` of bench.json, keeping the other sections; print it (`echo`)."""
    bench = json.loads(PATH.read_text()) if PATH.is_file() else {}
    bench[section] = result
    PATH.write_text(json.dumps(bench, indent=2) + "\n")
    if echo:
        print(json.dumps(result, indent=2))
