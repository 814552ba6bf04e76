"""The Arrow targets of the text types: ``str``, ``uuid`` and ``json``.

See :mod:`~ductwork.transforms.arrow_converters` for what each gives.
"""

from __future__ import annotations

from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ._arrow import (
    is_binary,
    is_number,
    is_string,
    mask_of,
    or_masks,
    screen,
    trimmed,
    valid_unscreened,
    where_not,
)
from .arrow_target import Pending, Target, TypedTarget, apply_step, cast_to

__all__ = ["JsonTarget", "StrTarget", "UuidTarget"]

_UUID_RE = (
    r"^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[0-9a-fA-F]{32})$"
)


class StrTarget(Target):
    """Strings: text and binary columns as text, numbers, decimals and dates as ``str`` writes
    them."""

    def arrow_type(self) -> Any:
        return pa.string()

    def keeps(self, t: Any) -> bool:
        return is_string(t)

    def fast(self, array: Any) -> Pending:
        t = array.type
        if is_binary(t):
            out, failed = apply_step(cast_to(pa.string()), array)
            return Pending(out, failed)
        if pa.types.is_integer(t) or pa.types.is_decimal(t) or pa.types.is_date32(t):
            # the same text as str(int), str(Decimal) and date.isoformat()
            return Pending(pc.cast(array, pa.string()), None)
        if pa.types.is_boolean(t):
            return Pending(pc.if_else(array, "True", "False"), None)
        return self.by_value(array)


class UuidTarget(TypedTarget):
    """UUIDs, in Arrow's ``uuid`` extension type."""

    type = pa.uuid()

    def fast(self, array: Any) -> Pending:
        t = array.type
        if pa.types.is_fixed_size_binary(t) and t.byte_width == 16:
            return Pending(array, None)
        if is_string(t):
            return self.from_strings(array)
        return self.by_value(array)

    def from_strings(self, array: Any) -> Pending:
        text = trimmed(array)
        ok = screen(text, _UUID_RE)
        digits = pc.replace_substring(where_not(text, pc.invert(ok)), "-", "")
        n = len(digits)
        # every row 32 hex digits: join them into one string and decode it in one call
        digits = pc.cast(digits.fill_null("0" * 32), pa.string())
        whole = pa.ListArray.from_arrays(pa.array([0, n], pa.int32()), digits)
        raw = bytes.fromhex(pc.binary_join(whole, "")[0].as_py())
        storage = pa.Array.from_buffers(pa.binary(16), n, [None, pa.py_buffer(raw)])
        return Pending(where_not(storage, pc.invert(ok)), valid_unscreened(array, ok))

    def finish(
        self, pending: Pending, rows: list[int], values: list[Any]
    ) -> tuple[Any, dict[int, str]]:
        storage = pending.array
        if isinstance(storage, pa.ExtensionArray):
            storage = storage.storage
        if rows:
            storage = pc.replace_with_mask(
                storage,
                mask_of(len(storage), rows),
                pa.array([v.bytes for v in values], pa.binary(16)),
            )
        return pa.ExtensionArray.from_storage(pa.uuid(), storage), {}


class JsonTarget(Target):
    """JSON text is checked with orjson and kept, in Arrow's ``json`` extension type."""

    def arrow_type(self) -> Any:
        return pa.string()  # the text, wrapped in the extension type by `finish`

    def keeps(self, t: Any) -> bool:
        return bool(
            t == pa.json_() or pa.types.is_nested(t) or is_number(t) or pa.types.is_boolean(t)
        )

    def fast(self, array: Any) -> Pending:
        t = array.type
        if not (is_string(t) or is_binary(t)):
            return self.by_value(array)
        text, failed = apply_step(cast_to(pa.string()), array) if is_binary(t) else (array, None)
        present = pc.and_not(text.is_valid(), failed) if failed is not None else text.is_valid()
        values = text.filter(present).to_pylist()
        try:
            list(map(orjson.loads, values))
        except orjson.JSONDecodeError:
            bad = []
            rows = pc.indices_nonzero(present).to_pylist()
            for row, value in zip(rows, values, strict=True):
                try:
                    orjson.loads(value)
                except orjson.JSONDecodeError:
                    bad.append(row)
            failed = or_masks(failed, mask_of(len(text), bad))
        out = text if failed is None else where_not(text, failed)
        return Pending(pc.cast(out, pa.string()), failed)

    def finish(
        self, pending: Pending, rows: list[int], values: list[Any]
    ) -> tuple[Any, dict[int, str]]:
        # rows the records converter accepted after all keep their text
        return pa.ExtensionArray.from_storage(pa.json_(), pending.array), {}
