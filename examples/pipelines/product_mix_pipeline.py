"""Product mix: units sold per product over a month.

Exposes its pipeline with ``get_pipeline_registry()``. The factory builds a new pipeline for every
run, so each run counts into a fresh counter. Output:
``examples/output/product_mix/<month>.jsonl`` (or under the ``output_dir`` parameter).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from _orders import JsonLinesFile, read_orders

from ductwork import Batch, Pipeline, RunContext, create_el_pipeline


def build() -> Pipeline:
    """Units per product for one month of orders."""
    units: Counter[str] = Counter()

    async def units_per_product(ctx: RunContext) -> AsyncIterator[Batch]:
        async for batch in read_orders(ctx):
            for order in batch:
                units[order["product"]] += order["quantity"]
        month = f"{ctx.window.start:%Y-%m}" if ctx.window else "all"
        yield [{"month": month, "product": p, "units": n} for p, n in sorted(units.items())]

    return create_el_pipeline(
        units_per_product,
        JsonLinesFile("product_mix/{window.start:%Y-%m}.jsonl"),
        name="product_mix",
    )


def get_pipeline_registry() -> dict[str, Any]:
    """The pipelines of this module, by name, with their registration options."""
    return {
        "product_mix": {
            "pipeline": build,
            "timescope": "monthly",
            "description": "units sold per product, one file per month",
        },
    }
