"""Event generation of the synthetic marketplace, one block of stores at a time.

Everything here is vectorised numpy over a block's stores and reads only the store plan
(``features.synth.plan``), so memory is bounded by the block size and the result is the same
whatever else is generated. Events are integers here; ``features.synth.tables`` turns them
into Arrow tables with string ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.synth.accounts import IdSpace, generate_logins, rand_below, repeat_rows, sort_rows
from features.synth.catalog import (
    CATEGORIES,
    HARMLESS_TERMS,
    OCR_CLAIMS,
    OCR_GENUINE,
    OCR_REPLICA,
    OCR_UNBRANDED,
    PLAIN_SUFFIXES,
    REPLICA_TERMS,
    REVIEWS_AUTHENTIC,
    REVIEWS_LONG_POSITIVE,
    REVIEWS_MIXED,
    REVIEWS_NEGATIVE,
    REVIEWS_NEGATIVE_FAKE,
    REVIEWS_SHORT_POSITIVE,
    UNBRANDED_ADJECTIVES,
    Catalog,
)
from features.synth.plan import (
    COMPLAINT,
    DAY,
    MONTH,
    ORDERS_PER_MONTH,
    RIGHTS_HOLDER,
    TEST_BUY,
    Period,
    StorePlan,
)

HOUR = 3_600
# Kinds of order: ordinary buyers, fake-review bursts, platform test buys, and the order
# behind an escalated counterfeit complaint.
REGULAR_ORDER, BURST_ORDER, TEST_ORDER, TRIGGER_ORDER = range(4)
REVIEW_TEXTS = (
    REVIEWS_SHORT_POSITIVE
    + REVIEWS_LONG_POSITIVE
    + REVIEWS_MIXED
    + REVIEWS_NEGATIVE
    + REVIEWS_NEGATIVE_FAKE
    + REVIEWS_AUTHENTIC
)
_N_SHORT, _N_LONG, _N_MIXED, _N_NEG, _N_NEG_FAKE, _N_AUTHENTIC = (
    len(REVIEWS_SHORT_POSITIVE),
    len(REVIEWS_LONG_POSITIVE),
    len(REVIEWS_MIXED),
    len(REVIEWS_NEGATIVE),
    len(REVIEWS_NEGATIVE_FAKE),
    len(REVIEWS_AUTHENTIC),
)
_LONG_AT = _N_SHORT
_MIXED_AT = _LONG_AT + _N_LONG
_NEG_AT = _MIXED_AT + _N_MIXED
_NEG_FAKE_AT = _NEG_AT + _N_NEG
_AUTHENTIC_AT = _NEG_FAKE_AT + _N_NEG_FAKE
SUFFIXES = (
    tuple(f" {s}" if s else "" for s in PLAIN_SUFFIXES)
    + tuple(f" {s}" for s in REPLICA_TERMS)
    + tuple(f" {s}" for s in HARMLESS_TERMS)
)
_REPLICA_AT = len(PLAIN_SUFFIXES)
_HARMLESS_AT = _REPLICA_AT + len(REPLICA_TERMS)
# How counterfeiters adapt over the period: the share of their gap to the reference price
# they close, and how much the share of genuine stock at full price grows.
ADAPT_PRICE = 0.4
ADAPT_CAMOUFLAGE = 0.25
_DUPE_TERMS = np.array([REPLICA_TERMS.index("inspired"), REPLICA_TERMS.index("dupe")])


_OCR_BRANDED = (OCR_GENUINE, OCR_REPLICA, OCR_CLAIMS)


def ocr_texts(catalog: Catalog) -> tuple[str, ...]:
    """All OCR strings: genuine, replica and claim templates x brands, then unbranded."""
    out = [
        t.replace("{B}", b.upper())
        for templates in _OCR_BRANDED
        for t in templates
        for b in catalog.brand_names
    ]
    return tuple(out) + OCR_UNBRANDED


@dataclass
class Block:
    """Integer events of one block; ``owner`` columns index the block's stores."""

    listings: dict[str, np.ndarray]
    orders: dict[str, np.ndarray]
    reviews: dict[str, np.ndarray]
    disputes: dict[str, np.ndarray]
    logins: dict[str, np.ndarray]


def _listings(
    rng: np.random.Generator,
    s: dict[str, np.ndarray],
    rights: np.ndarray,
    period: Period,
    catalog: Catalog,
) -> dict[str, np.ndarray]:
    """Listings: catalogue, brand mix, prices against the reference price, titles, OCR."""
    ns = len(s["is_cf"])
    a, c = s["active_from"], s["close"]
    dur = np.maximum(c - a, 1)
    lam = 5.5 * s["size"] ** 0.6 * (1 + dur / MONTH / 12)
    owner, first = repeat_rows(1 + rng.poisson(lam))
    m = len(owner)
    launch = rng.random(m) < 0.4  # most of a catalogue goes up in the first weeks
    span = np.where(launch, np.minimum(14 * DAY, dur[owner]), dur[owner])
    offs = (rng.random(m) * span).astype(np.int64)
    offs[first] = (rng.random(ns) * np.minimum(6 * HOUR, dur)).astype(np.int64)
    t = a[owner] + offs
    order = np.lexsort((t, owner))
    owner, t = owner[order], t[order]
    cf = s["is_cf"][owner]
    tf = (t - period.start) / period.seconds

    # Brand: the store's home brand, another brand of its category (famous ones preferred by
    # counterfeiters), or any category (broad mix); rights-holder checks need a famous brand.
    branded = rng.random(m) < s["branded_share"][owner]
    anycat = rng.random(m) < s["p_anycat"][owner]
    bcat = np.where(anycat, rng.integers(0, len(catalog.categories), m), s["category"][owner])
    pick_famous = rng.random(m) < s["famous_pref"][owner]
    count = catalog.category_brand_count[bcat]
    other = catalog.category_brand_start[bcat] + np.where(
        pick_famous, rng.integers(0, 3, m), rand_below(rng, count)
    )
    brand = np.where(rng.random(m) < s["p_home"][owner], s["home_brand"][owner], other)
    forced = first[rights]
    branded[forced] = True
    home = s["home_brand"][rights]
    brand[forced] = np.where(
        catalog.brand_famous[home],
        home,
        catalog.category_brand_start[s["category"][rights]] + rng.integers(0, 3, len(forced)),
    )
    pcat = np.where(branded, catalog.brand_category[brand], s["category"][owner])
    prod = catalog.category_product_start[pcat] + rand_below(
        rng, catalog.category_product_count[pcat]
    )
    reference = np.round(catalog.brand_reference[brand] * catalog.product_factor[prod], 2)

    # Price: counterfeiters drift towards genuine-looking prices later in the period (they
    # close part of their gap to the reference, and mix in more genuine stock at full
    # price); some listings sit at the store's other price level.
    center = s["price_center"][owner]
    center = np.where(cf, center + ADAPT_PRICE * tf * np.maximum(1 - center, 0), center)
    alt = rng.random(m) < s["alt_price_share"][owner] + np.where(cf, ADAPT_CAMOUFLAGE * tf, 0)
    center = np.where(alt, s["alt_price"][owner], center)
    ratio = np.clip(center * np.exp(rng.normal(0, s["price_sigma"][owner])), 0.05, 1.6)
    unbranded_price = np.array([v[2] for v in CATEGORIES.values()])[pcat]
    unbranded_price = unbranded_price * catalog.product_factor[prod] * np.exp(rng.normal(0, 0.5, m))
    price = np.maximum(np.round(np.where(branded, reference * ratio, unbranded_price), 2), 0.5)
    stock = rng.geometric(1 / (1 + s["stock_mean"][owner])) - 1

    # Title: brand (or an adjective) + product + suffix; replica words fade as they adapt.
    replica = cf & branded & (rng.random(m) < s["replica_share"][owner] * (1 - 0.5 * tf))
    dupe = s["dupe_shop"][owner] & ~branded & (rng.random(m) < 0.5)
    harmless = rng.random(m) < s["harmless_share"][owner]
    suffix = np.select(
        [replica, dupe, harmless],
        [_REPLICA_AT + rng.integers(0, len(REPLICA_TERMS), m),
         _REPLICA_AT + _DUPE_TERMS[rng.integers(0, 2, m)],
         _HARMLESS_AT + rng.integers(0, len(HARMLESS_TERMS), m)],
        rng.integers(0, len(PLAIN_SUFFIXES), m),
    )  # fmt: skip
    nb = len(catalog.brand_names)
    head = np.where(branded, brand, nb + rng.integers(0, len(UNBRANDED_ADJECTIVES), m))
    # Image text: the brand's own print, replica slang, or an authenticity claim.
    share = s["replica_share"][owner]
    p_replica = np.where(share > 0, 1.5 * share + 0.05, 0.0)
    u = rng.random(m)
    kind = np.select([u < p_replica, u < p_replica + s["ocr_claim"][owner]], [1, 2], 0)
    first_template = np.cumsum([0] + [len(t) for t in _OCR_BRANDED])[kind]
    n_templates = np.array([len(t) for t in _OCR_BRANDED])[kind]
    n_branded = sum(len(t) for t in _OCR_BRANDED)
    ocr = np.where(
        branded,
        (first_template + rand_below(rng, n_templates)) * nb + brand,
        n_branded * nb + rng.integers(0, len(OCR_UNBRANDED), m),
    )
    ocr = np.where(rng.random(m) < 0.25, ocr, -1)
    return {
        "owner": owner,
        "listed_at": t,
        "brand": np.where(branded, brand, -1),
        "famous": branded & catalog.brand_famous[brand],
        "title_head": head,
        "product": prod,
        "suffix": suffix,
        "price": price,
        "reference_price": np.where(branded, reference, np.nan),
        "stock": stock,
        "ocr": ocr,
    }


def _orders(
    rng: np.random.Generator,
    s: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    listings: dict[str, np.ndarray],
    ids: IdSpace,
    lo: int,
    period: Period,
) -> dict[str, np.ndarray]:
    """Orders of ordinary buyers, fake-review bursts, test buys and complaint triggers."""
    ns = len(s["is_cf"])
    counts = np.bincount(listings["owner"], minlength=ns)
    lstart = np.cumsum(counts) - counts
    o_from = listings["listed_at"][lstart] + HOUR
    c = s["close"]
    window = np.maximum(c - o_from, 0)
    n_reg = rng.poisson(ORDERS_PER_MONTH * s["size"] * window / MONTH)
    owner, _ = repeat_rows(n_reg)
    t = o_from[owner] + (rng.random(len(owner)) * window[owner]).astype(np.int64)
    kind = np.full(len(owner), REGULAR_ORDER)

    # Fake-review bursts: a few days of orders from accounts linked to the store or ring.
    months = window / MONTH
    bursty = s["fake_reviews"] & (window > 6 * DAY)
    n_bursts = np.where(bursty, 1 + rng.poisson(months / 6), 0)
    b_owner, _ = repeat_rows(n_bursts)
    b_time = o_from[b_owner] + (rng.random(len(b_owner)) * (window[b_owner] - 4 * DAY)).astype(
        np.int64
    )
    b_size = 3 + rng.poisson(4 * s["size"][b_owner] ** 0.3)
    burst_of, _ = repeat_rows(b_size)
    bo_owner = b_owner[burst_of]
    bo_time = b_time[burst_of] + rng.integers(0, 2 * DAY, len(burst_of))

    # Label evidence: a test-buy order at the trigger, or the order behind the complaint.
    test = labels["source"] == TEST_BUY
    comp = labels["source"] == COMPLAINT
    t_owner, t_time = labels["owner"][test], labels["trigger_at"][test]
    c_owner = labels["owner"][comp]
    c_time = np.maximum(
        o_from[c_owner], labels["trigger_at"][comp] - rng.integers(3 * DAY, 20 * DAY, comp.sum())
    )
    cols = {
        "owner": np.concatenate([owner, bo_owner, t_owner, c_owner]),
        "ordered_at": np.concatenate([t, bo_time, t_time, c_time]),
        "kind": np.concatenate(
            [
                kind,
                np.full(len(bo_owner), BURST_ORDER),
                np.full(len(t_owner), TEST_ORDER),
                np.full(len(c_owner), TRIGGER_ORDER),
            ]
        ),  # fmt: skip
        "trigger": np.concatenate(
            [np.full(len(owner) + len(bo_owner) + len(t_owner), -1), np.flatnonzero(comp)]
        ),
    }
    cols = sort_rows(cols, "owner", "ordered_at")
    owner, t, kind = cols["owner"], cols["ordered_at"], cols["kind"]
    m = len(owner)

    # The listing is one the store had up at order time.
    shift = np.int64(1) << 34
    lkey = listings["owner"] * shift + (listings["listed_at"] - listings["listed_at"].min())
    okey = owner * shift + (t - listings["listed_at"].min())
    eligible = np.searchsorted(lkey, okey, side="right") - lstart[owner]
    listing = lstart[owner] + rand_below(rng, np.maximum(eligible, 1))
    qty = np.where((kind == REGULAR_ORDER) & (rng.random(m) < 0.2), rng.integers(2, 5, m), 1)

    # Buyers: loyal customers of the store, the general population (heavy buyers first),
    # fake accounts of the store's ring (or its own, or a hired farm), test buyers.
    plan_idx = lo + owner
    ring = s["ring"][owner]
    loyal_n = np.minimum(64, 3 + (5 * s["size"][owner]).astype(np.int64))
    regular_buyer = np.where(
        rng.random(m) < 0.2,
        ids.loyal + plan_idx * 64 + rand_below(rng, loyal_n),
        (ids.buyers * rng.random(m) ** 2).astype(np.int64),
    )
    fake_buyer = np.select(
        [ring >= 0, s["is_cf"][owner]],
        [ids.ring_fakes + ring * 64 + rand_below(rng, s["ring_fake_buyers"][owner]),
         ids.solo_fakes + plan_idx * 16 + rng.integers(0, 8, m)],
        ids.farm + rng.integers(0, ids.farm_size, m),
    )  # fmt: skip
    buyer = np.select(
        [kind == BURST_ORDER, kind == TEST_ORDER],
        [fake_buyer, ids.test_buyers + rng.integers(0, 40, m)],
        regular_buyer,
    )

    # Shipping: from the declared region, or from a hub / production region.
    alt = rng.random(m) < s["p_ship_alt"][owner]
    ship = np.where(alt, s["ship_alt"][owner], s["declared"][owner])
    # Delivery: carrier time, a longer haul from another region, and the store's own delay
    # (handling, cross-border shipping), which varies from order to order.
    delay = s["ship_delay"][owner] * rng.uniform(0.6, 1.4, m)
    days = 1 + rng.gamma(2.0, 1.2, m) + 1.5 * (ship != s["declared"][owner]) + delay
    delivered = t + (days * DAY).astype(np.int64)
    lost = (kind == REGULAR_ORDER) & (rng.random(m) < s["p_lost"][owner])
    lost |= delivered >= period.end  # still in transit when the period ends
    returned = (kind == REGULAR_ORDER) & ~lost & (rng.random(m) < s["p_return"][owner])
    cols.update(
        listing=listing,
        buyer=buyer,
        amount=np.round(listings["price"][listing] * qty, 2),
        ship_from=ship,
        delivered_at=np.where(lost, -1, delivered),
        returned=returned,
    )
    return cols


def _disputes(
    rng: np.random.Generator,
    s: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    orders: dict[str, np.ndarray],
    period: Period,
) -> dict[str, np.ndarray]:
    """Disputes on orders; counterfeit complaints are noisy, and one triggers each check."""
    owner, kind = orders["owner"], orders["kind"]
    m = len(owner)
    lost = orders["delivered_at"] < 0
    probs = np.stack(
        [
            s["p_cf_dispute"][owner],
            s["p_not_described"][owner],
            np.where(lost, 0.5, 0.001),
            np.full(m, 0.002),
        ]
    )
    cum = np.cumsum(probs, axis=0)
    u = rng.random(m)
    reason = np.argmax(u < cum, axis=0)
    has = (kind == REGULAR_ORDER) & (u < cum[-1])
    base = np.where(lost, orders["ordered_at"] + 20 * DAY, orders["delivered_at"])
    opened = base + rng.integers(DAY, 14 * DAY, m)
    keep = has & (opened < np.minimum(s["close"][owner], period.end))
    idx = np.flatnonzero(keep)
    trig = np.flatnonzero(kind == TRIGGER_ORDER)
    cols = {
        "owner": np.concatenate([owner[idx], owner[trig]]),
        "order": np.concatenate([idx, trig]),
        "opened_at": np.concatenate([opened[idx], labels["trigger_at"][orders["trigger"][trig]]]),
        "reason": np.concatenate([reason[idx], np.zeros(len(trig), dtype=np.int64)]),
    }
    return sort_rows(cols, "owner", "opened_at")


def _ratings(rng: np.random.Generator, quality: np.ndarray) -> np.ndarray:
    """Star ratings of real buyers: the worse the goods, the more unhappy buyers."""
    happy = np.array([0.05, 0.03, 0.07, 0.20, 0.65])
    unhappy = np.array([0.22, 0.11, 0.13, 0.15, 0.39])
    probs = quality[:, None] * happy + (1 - quality[:, None]) * unhappy
    cum = np.cumsum(probs, axis=1)
    return 1 + np.argmax(rng.random(len(quality))[:, None] < cum, axis=1)


def _review_texts(
    rng: np.random.Generator, rating: np.ndarray, s: dict[str, np.ndarray], owner: np.ndarray
) -> np.ndarray:
    """Index into ``REVIEW_TEXTS`` for each review, by rating and the store's buyers."""
    m = len(rating)
    short_pref = s["short_pref"][owner]
    short = rng.integers(0, _N_SHORT, m)
    long_ = _LONG_AT + rng.integers(0, _N_LONG, m)
    mixed = _MIXED_AT + rng.integers(0, _N_MIXED, m)
    neg = _NEG_AT + rng.integers(0, _N_NEG, m)
    neg_fake = _NEG_FAKE_AT + rng.integers(0, _N_NEG_FAKE, m)
    authentic = _AUTHENTIC_AT + rng.integers(0, _N_AUTHENTIC, m)
    u, v = rng.random(m), rng.random(m)
    happy = np.where(v < s["p_authentic"][owner], authentic, short)
    return np.select(
        [rating == 5, rating == 4, rating == 3, v < s["p_fake_words"][owner]],
        [np.where(u < short_pref, happy, long_),
         np.where(u < 0.7 * short_pref, happy, np.where(u < 0.85, long_, mixed)), mixed,
         neg_fake],
        neg,
    )  # fmt: skip


def _reviews(
    rng: np.random.Generator,
    s: dict[str, np.ndarray],
    orders: dict[str, np.ndarray],
    ids: IdSpace,
    period: Period,
) -> dict[str, np.ndarray]:
    """Reviews: some of the ordinary orders, most burst orders, a few without an order.

    Bought reviews come soon after their order, mostly five stars in a few words; careful
    buyers of reviews have them written long, a few at four stars, to look believable.
    """
    owner, kind = orders["owner"], orders["kind"]
    m = len(owner)
    burst = kind == BURST_ORDER
    has = np.where(burst, rng.random(m) < s["burst_reviewed"][owner],
                   (kind == REGULAR_ORDER) & (rng.random(m) < s["p_review"][owner]))  # fmt: skip
    base = np.where(orders["delivered_at"] < 0, orders["ordered_at"] + 12 * DAY,
                    orders["delivered_at"])  # fmt: skip
    created = np.where(
        burst,
        orders["ordered_at"] + rng.integers(8 * HOUR, 3 * DAY, m),
        base + rng.integers(5 * HOUR, 10 * DAY, m),
    )
    believable = rng.random(m) < s["burst_long"][owner]
    rating = np.where(
        burst,
        np.where(believable & (rng.random(m) < 0.25), 4, 5),
        _ratings(rng, s["quality"][owner]),
    )
    text = np.where(
        burst,
        np.where(believable, _LONG_AT + rng.integers(0, _N_LONG, m), rng.integers(0, _N_SHORT, m)),
        _review_texts(rng, rating, s, owner),
    )
    idx = np.flatnonzero(has & (created < np.minimum(s["close"][owner], period.end)))

    # Reviews without an order (imported or from before the order system): a few percent.
    ns = len(s["is_cf"])
    per_store = np.bincount(owner[idx], minlength=ns)
    n_free = rng.poisson(0.08 * per_store + 0.05)
    f_owner, _ = repeat_rows(n_free)
    a, c = s["active_from"][f_owner], np.minimum(s["close"][f_owner], period.end)
    f_time = a + (rng.random(len(f_owner)) * np.maximum(c - a, 1)).astype(np.int64)
    f_rating = _ratings(rng, s["quality"][f_owner])
    cols = {
        "owner": np.concatenate([owner[idx], f_owner]),
        "order": np.concatenate([idx, np.full(len(f_owner), -1)]),
        "buyer": np.concatenate(
            [orders["buyer"][idx], (ids.buyers * rng.random(len(f_owner)) ** 2).astype(np.int64)]
        ),
        "created_at": np.concatenate([created[idx], f_time]),
        "rating": np.concatenate([rating[idx], f_rating]),
        "text": np.concatenate([text[idx], _review_texts(rng, f_rating, s, f_owner)]),
    }
    return sort_rows(cols, "owner", "created_at")


def generate_block(
    plan: StorePlan,
    lo: int,
    hi: int,
    period: Period,
    catalog: Catalog,
    ids: IdSpace,
    nat_pools: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
) -> Block:
    """Generate the integer events of the plan's stores ``lo..hi-1``.

    Args:
        plan: The marketplace plan.
        lo: First store (plan index) of the block.
        hi: One past the last store of the block.
        period: Generated period.
        catalog: Vocabulary.
        ids: Id space of accounts, devices, Wi-Fi and IPs.
        nat_pools: Start and size of each region's carrier-NAT pool in the NAT id space.
        rng: The block's random generator.

    Returns:
        The block's events, with ``owner`` = plan index - ``lo``.
    """
    s = {k: v[lo:hi] for k, v in plan.stores.items()}
    rings = plan.rings
    r = np.maximum(s["ring"], 0)
    s["ring_fake_buyers"] = np.where(s["ring"] >= 0, rings["fake_buyers"][r], 1)
    s["ring_devices"] = np.where(s["ring"] >= 0, rings["devices"][r], 1)
    s["ring_wifis"] = np.where(s["ring"] >= 0, rings["wifis"][r], 1)
    s["ring_den_share"] = np.where(s["ring"] >= 0, rings["den_share"][r], 0.0)
    s["ring_office"] = np.where(s["ring"] >= 0, rings["office"][r], -1)
    i, j = np.searchsorted(plan.labels["store"], [lo, hi])
    labels = {k: v[i:j] for k, v in plan.labels.items()}
    labels["owner"] = labels["store"] - lo
    rights = np.zeros(hi - lo, dtype=bool)
    rights[labels["owner"][labels["source"] == RIGHTS_HOLDER]] = True
    listings = _listings(rng, s, np.flatnonzero(rights), period, catalog)
    orders = _orders(rng, s, labels, listings, ids, lo, period)
    disputes = _disputes(rng, s, labels, orders, period)
    reviews = _reviews(rng, s, orders, ids, period)
    logins = generate_logins(rng, s, ids, nat_pools, lo)
    return Block(listings, orders, reviews, disputes, logins)
