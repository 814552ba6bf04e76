"""Daily orders: each run writes one day's orders, priced, as JSON Lines.

Scheduled runs cover the previous day. Exposes its pipeline with ``register_pipelines(registry)``.
Output: ``examples/output/daily_orders/<day>.jsonl`` (or under the ``output_dir`` parameter).
"""

from __future__ import annotations

from collections import Counter

from _orders import JsonLinesFile, price, read_orders

from ductwork import Batch, Pipeline, PipelineRegistry, RunContext, create_etl_pipeline


def tag_region(batch: Batch, ctx: RunContext) -> Batch:
    """Upper-case the region code and count orders per region in the run's metrics."""
    for region, count in Counter(order["region"] for order in batch).items():
        ctx.add_metric(f"orders_{region}", count)
    return [{**order, "region": order["region"].upper()} for order in batch]


def build() -> Pipeline:
    """One day of orders, priced."""
    return create_etl_pipeline(
        read_orders,
        [price, tag_region],
        JsonLinesFile("daily_orders/{window.start:%Y-%m-%d}.jsonl"),
        name="daily_orders",
    )


def register_pipelines(registry: PipelineRegistry) -> None:
    """Register the daily orders pipeline, run at 00:05 UTC for the day before."""
    registry.register_pipeline_with_timescope(
        "daily_orders",
        build,
        "daily",
        schedule="5 0 * * *",
        tags=["orders"],
    )
