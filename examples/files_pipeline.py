"""Files: convert the bundled customers CSV to gzip-compressed JSON Lines.

The file extractor streams ``data/customers.csv`` (quoted fields, line breaks inside quotes, and two
malformed rows that ``error_handling="skip"`` drops and counts); a transformer gives the columns
their types; the file loader writes ``output/customers_to_jsonl.jsonl.gz`` through a temporary file
that is renamed into place only when the run succeeds.

    python examples/files_pipeline.py
"""

from __future__ import annotations

from pathlib import Path

import anyio

from ductwork import (
    Batch,
    RunResult,
    create_etl_pipeline,
    create_file_extractor,
    create_file_loader,
)

EXPECTED = (
    "two malformed CSV rows are skipped and counted on purpose (records_skipped 2; the log "
    "names their lines)"
)
HERE = Path(__file__).parent
DATA = HERE / "data" / "customers.csv"
OUTPUT = HERE / "output"


def with_types(batch: Batch) -> Batch:
    """CSV values are strings: make numbers numbers and drop empty notes."""
    return [
        {
            "customer_id": int(row["customer_id"]),
            "name": row["name"],
            "country": row["country"],
            "plan": row["plan"],
            "signed_up": row["signed_up"],
            "lifetime_value": float(row["lifetime_value"]),
            **({"note": row["note"]} if row["note"] else {}),
        }
        for row in batch
    ]


async def main(output_dir: Path = OUTPUT) -> RunResult:
    """Run the conversion once and return its result."""
    pipeline = create_etl_pipeline(
        create_file_extractor(DATA, batch_size=250, error_handling="skip"),
        with_types,
        create_file_loader(output_dir / "{pipeline}.jsonl.gz"),
        name="customers_to_jsonl",
    )
    result = await pipeline.run()
    skipped = result.stages[0].metrics.get("records_skipped", 0)
    print(f"  customers written: {result.records_out:,} ({skipped} malformed rows skipped)")
    print(f"  output file: {output_dir / 'customers_to_jsonl.jsonl.gz'}")
    return result


if __name__ == "__main__":
    print(anyio.run(main).summary())
