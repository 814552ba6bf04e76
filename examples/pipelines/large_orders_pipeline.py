"""Large orders of the week: every order of 100.00 or more, as JSON Lines, one file per week.

Exposes its pipeline with a ``PIPELINE_REGISTRY`` mapping. Output:
``examples/output/large_orders/<ISO week>.jsonl`` (or under the ``output_dir`` parameter).
"""

from __future__ import annotations

from _orders import JsonLinesFile, price, read_orders

from ductwork import Batch, Pipeline, create_etl_pipeline


def only_large(batch: Batch) -> Batch:
    """Keep orders of 100.00 or more."""
    return [order for order in batch if order["total"] >= 100]


def build() -> Pipeline:
    """Large orders of one week."""
    return create_etl_pipeline(
        read_orders,
        [price, only_large],
        JsonLinesFile("large_orders/{window.start:%G-W%V}.jsonl"),
        name="large_orders",
    )


PIPELINE_REGISTRY = {
    "large_orders": {
        "pipeline": build,
        "timescope": "weekly",
        "schedule": "0 1 * * 1",
        "description": "orders of 100.00 or more, one file per ISO week",
        "tags": ["orders"],
    },
}
