"""Turn the synthetic marketplace's integer plan and events into contract Arrow tables.

Ids become fixed-width strings built straight into Arrow buffers (much faster than formatting
numbers one by one), accounts, devices and IPs are scrambled with a seeded bijection so that
neighbouring ids do not reveal which stores belong together, and every table gets exactly the
contract's column names and types.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from features.contract.tables import CONTRACT, DISPUTE_REASONS, LABEL_SOURCES, STOREFRONT_TEMPLATES
from features.synth.catalog import UNBRANDED_ADJECTIVES, Catalog
from features.synth.events import REVIEW_TEXTS, SUFFIXES, Block, ocr_texts
from features.synth.plan import StorePlan

_ARROW_TYPES = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
# Two ASCII digits per value 0..99, to write ids two digits at a time.
_PAIRS = np.array([ord(f"{i:02d}"[0]) | ord(f"{i:02d}"[1]) << 8 for i in range(100)], "<u2")


def contract_schema(table: str) -> pa.Schema:
    """Arrow schema of a contract table (timestamps in microseconds, UTC)."""
    return pa.schema([(c.name, _ARROW_TYPES[c.kind]) for c in CONTRACT[table].columns])


def truth_schema() -> pa.Schema:
    """Arrow schema of ``truth.parquet``."""
    return pa.schema(
        [("store_id", pa.string()), ("is_counterfeit", pa.int64()), ("ring_id", pa.string())]
    )


def fixed_ids(prefix: str, nums: np.ndarray, width: int = 10) -> pa.StringArray:
    """Strings ``prefix`` + ``nums`` zero-padded to ``width`` digits (``width`` even).

    Args:
        prefix: ASCII prefix, e.g. ``"ORD"``.
        nums: Non-negative integers below ``10**width``.
        width: Number of digits.

    Returns:
        One string per number.
    """
    n, p = len(nums), len(prefix)
    row = p + width
    buf = np.empty((n, row), dtype=np.uint8)
    buf[:, :p] = np.frombuffer(prefix.encode(), dtype=np.uint8)
    pairs = np.empty((n, width // 2), dtype="<u2")
    v = np.asarray(nums, dtype=np.int64).copy()
    for k in range(width // 2 - 1, -1, -1):
        pairs[:, k] = _PAIRS[v % 100]
        v //= 100
    buf[:, p:] = pairs.view(np.uint8).reshape(n, width)
    offsets = np.arange(0, (n + 1) * row, row, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(buf.reshape(-1)))


def scramble(x: np.ndarray, bits: int, salt: int) -> np.ndarray:
    """A seeded bijection of ``[0, 2**bits)``: hides the structure of planned ids.

    Args:
        x: Integers in ``[0, 2**bits)``.
        bits: Width of the id space.
        salt: Seed-derived salt.

    Returns:
        Distinct inputs map to distinct outputs in the same range.
    """
    mask = np.uint64((1 << bits) - 1)
    y = (np.asarray(x, dtype=np.uint64) ^ np.uint64(salt)) & mask
    y = (y * np.uint64(0x9E3779B97F4A7C15)) & mask  # odd multiplier: bijective mod 2**bits
    y ^= y >> np.uint64(bits // 2)
    y = (y * np.uint64(0xC2B2AE3D27D4EB4F)) & mask
    y ^= y >> np.uint64(bits // 3)
    return y.astype(np.int64)


def _take(values: pa.Array, idx: np.ndarray) -> pa.Array:
    """``values[idx]`` with nulls where ``idx < 0``."""
    return values.take(pa.array(np.maximum(idx, 0), mask=idx < 0))


def _ts(seconds: np.ndarray) -> pa.Array:
    """UTC microsecond timestamps from epoch seconds, null where negative."""
    seconds = np.asarray(seconds, dtype=np.int64)
    return pa.array(seconds * 1_000_000, type=_ARROW_TYPES["timestamp"], mask=seconds < 0)


def _ip_strings(ips: np.ndarray) -> pa.Array:
    """Dotted-quad strings of 32-bit addresses (formatted once per distinct address)."""
    uniq, inverse = np.unique(ips, return_inverse=True)
    octets = [pc.cast(pa.array((uniq >> s) & 255), pa.string()) for s in (24, 16, 8, 0)]
    return pc.binary_join_element_wise(*octets, ".").take(pa.array(inverse))


class TableBuilder:
    """Builds the contract tables of a plan's blocks; holds the string vocabularies.

    Args:
        plan: The marketplace plan.
        catalog: Vocabulary.
        seed: Random seed, used to salt the id scrambles.
    """

    def __init__(self, plan: StorePlan, catalog: Catalog, seed: int) -> None:
        self.plan = plan
        self.catalog = catalog
        self.salts = [int(v) for v in np.random.SeedSequence([seed, 2]).generate_state(5)]
        self.store_ids = fixed_ids("STR", plan.stores["store_num"], 8)
        self.brands = pa.array(catalog.brand_names)
        self.heads = pa.array(catalog.brand_names + UNBRANDED_ADJECTIVES)
        self.products = pa.array(catalog.product_names)
        self.suffixes = pa.array(SUFFIXES)
        self.ocr = pa.array(ocr_texts(catalog))
        self.regions = pa.array(catalog.regions)
        self.review_texts = pa.array(REVIEW_TEXTS)
        self.reasons = pa.array(DISPUTE_REASONS)

    def _account(self, prefix: str, x: np.ndarray, salt: int) -> pa.Array:
        """Scrambled 10-digit ids (the 33-bit space fits in 10 digits); null where x < 0."""
        ids = fixed_ids(prefix, scramble(np.maximum(x, 0), 33, self.salts[salt]))
        return ids if not (x < 0).any() else pc.if_else(pa.array(x < 0), None, ids)

    def block_tables(self, block: Block, lo: int, counters: dict[str, int]) -> dict[str, pa.Table]:
        """Contract tables of one block; advances the running id ``counters``.

        Args:
            block: Integer events of the block.
            lo: Plan index of the block's first store.
            counters: Next sequential number per id kind, updated in place.

        Returns:
            Table name -> Arrow table for listings, orders, reviews, disputes and logins.
        """
        ids = {}
        for name, prefix, rows in (
            ("listing", "LST", len(block.listings["owner"])),
            ("order", "ORD", len(block.orders["owner"])),
            ("review", "REV", len(block.reviews["owner"])),
            ("dispute", "DSP", len(block.disputes["owner"])),
        ):
            ids[name] = fixed_ids(prefix, counters[name] + np.arange(rows))
            counters[name] += rows
        store = self.store_ids
        lst, ords, rev, dsp, log = (
            block.listings,
            block.orders,
            block.reviews,
            block.disputes,
            block.logins,
        )
        title = pc.binary_join_element_wise(
            pc.binary_join_element_wise(
                self.heads.take(pa.array(lst["title_head"])),
                self.products.take(pa.array(lst["product"])),
                " ",
            ),
            self.suffixes.take(pa.array(lst["suffix"])),
            "",
        )
        tables = {
            "listings": [
                ids["listing"],
                store.take(pa.array(lo + lst["owner"])),
                _ts(lst["listed_at"]),
                _take(self.brands, lst["brand"]),
                title,
                pa.array(lst["price"]),
                pa.array(lst["reference_price"], from_pandas=True),
                pa.array(lst["stock"]),
                _take(self.ocr, lst["ocr"]),
            ],
            "orders": [
                ids["order"],
                store.take(pa.array(lo + ords["owner"])),
                ids["listing"].take(pa.array(ords["listing"])),
                self._account("BUY", ords["buyer"], 0),
                _ts(ords["ordered_at"]),
                pa.array(ords["amount"]),
                self.regions.take(pa.array(ords["ship_from"])),
                _ts(ords["delivered_at"]),
                pa.array(ords["returned"]),
            ],
            "reviews": [
                ids["review"],
                store.take(pa.array(lo + rev["owner"])),
                _take(ids["order"], rev["order"]),
                self._account("BUY", rev["buyer"], 0),
                _ts(rev["created_at"]),
                pa.array(rev["rating"]),
                self.review_texts.take(pa.array(rev["text"])),
            ],
            "disputes": [
                ids["dispute"],
                store.take(pa.array(lo + dsp["owner"])),
                ids["order"].take(pa.array(dsp["order"])),
                _ts(dsp["opened_at"]),
                self.reasons.take(pa.array(dsp["reason"])),
            ],
            "logins": [
                store.take(pa.array(lo + log["owner"])),
                _ts(log["logged_at"]),
                _ip_strings(scramble(log["ip"], 31, self.salts[1]) + (1 << 24)),
                self._account("DEV", log["device"], 2),
                self._account("WIF", log["wifi"], 3),
            ],
        }
        return {
            name: pa.Table.from_arrays(cols, schema=contract_schema(name))
            for name, cols in tables.items()
        }

    def stores_table(self) -> pa.Table:
        """The ``stores`` table, in plan order."""
        st = self.plan.stores
        return pa.Table.from_arrays(
            [
                self.store_ids,
                fixed_ids("SLR", st["seller_num"], 8),
                _ts(st["opened_at"]),
                pa.array(self.catalog.categories).take(pa.array(st["category"])),
                pa.array(STOREFRONT_TEMPLATES).take(pa.array(np.where(st["basic"], 0, 1))),
                pa.array(st["modules"]),
                self.regions.take(pa.array(st["declared"])),
                pa.array(st["identity_verified"]),
            ],
            schema=contract_schema("stores"),
        )

    def labels_table(self) -> pa.Table:
        """The ``labels`` table (sorted by store, then time)."""
        lab = self.plan.labels
        return pa.Table.from_arrays(
            [
                self.store_ids.take(pa.array(lab["store"])),
                _ts(lab["labeled_at"]),
                pa.array(lab["is_counterfeit"]),
                pa.array(LABEL_SOURCES).take(pa.array(lab["source"])),
            ],
            schema=contract_schema("labels"),
        )

    def truth_table(self) -> pa.Table:
        """Ground truth of every store: ``store_id``, ``is_counterfeit``, ``ring_id``."""
        st = self.plan.stores
        ring = st["ring"]
        ring_ids = _take(fixed_ids("RING", np.arange(len(self.plan.rings["start"])), 6), ring)
        return pa.Table.from_arrays(
            [self.store_ids, pa.array(st["is_cf"].astype(np.int64)), ring_ids],
            schema=truth_schema(),
        )
