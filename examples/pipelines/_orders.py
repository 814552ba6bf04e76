"""Helpers shared by the example pipelines: read the bundled orders, write results atomically.

Not a pipeline module itself (its name does not match ``*_pipeline.py``); the pipeline modules
import it, which works because discovery puts this directory on ``sys.path`` while importing.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path

import anyio
import orjson

from ductwork import Batch, Loader, RunContext

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data" / "orders.jsonl"
OUTPUT = HERE.parent / "output"


async def read_orders(ctx: RunContext) -> AsyncIterator[Batch]:
    """Yield the orders of the run's window (all of them without one), 64 KiB at a time."""
    first: date | None = None
    last: date | None = None
    if ctx.window is not None:
        first = ctx.window.start.date()
        last = ctx.window.end.date()

    def in_window(lines: list[bytes]) -> Batch:
        orders = [orjson.loads(line) for line in lines if line.strip()]
        if first is None or last is None:
            return orders
        return [o for o in orders if first <= date.fromisoformat(o["day"]) < last]

    tail = b""
    async with await anyio.open_file(DATA, "rb") as fh:
        while chunk := await fh.read(65536):
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            yield in_window(lines)
    if tail.strip():
        yield in_window([tail])


def price(batch: Batch) -> Batch:
    """Add each order's total."""
    return [{**o, "total": round(o["quantity"] * o["unit_price"], 2)} for o in batch]


def output_dir(ctx: RunContext) -> Path:
    """Where results go: the ``output_dir`` parameter, else ``examples/output``."""
    return Path(ctx.params.get("output_dir", OUTPUT))


class JsonLinesFile(Loader):
    """Writes every record to ``output_dir/<template>`` as JSON Lines, atomically.

    The records go to a temporary file next to the target, renamed into place only when the run
    succeeds; a failed or cancelled run leaves nothing behind.
    """

    def __init__(self, template: str, name: str = "jsonl_file") -> None:
        self.template = template
        self.name = name

    @asynccontextmanager
    async def open(self, ctx: RunContext) -> AsyncIterator[JsonLinesFile._Sink]:
        target = output_dir(ctx) / self.template.format(**ctx.template_values())
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        os.close(fd)
        try:
            async with await anyio.open_file(tmp, "wb") as fh:
                yield JsonLinesFile._Sink(fh)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    class _Sink:
        def __init__(self, fh: anyio.AsyncFile[bytes]) -> None:
            self.fh = fh

        async def write(self, batch: Batch) -> None:
            await self.fh.write(b"".join(orjson.dumps(r) + b"\n" for r in batch))
