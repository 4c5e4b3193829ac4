"""Store-level plan of the synthetic marketplace: who every store is, before any event exists.

The plan holds one row per store for the whole marketplace (a few dozen numbers per store, so
it fits in memory at a million stores) and decides everything that links stores across event
blocks: counterfeit rings and their device/Wi-Fi/IP pools, shared offices, agencies and
family businesses, sellers with several stores, spot-check labels with the evidence that
triggers them, bans, and the stores that rings re-open after a ban.
``features.synth.events`` then generates each block's events from the plan alone, so blocks
never need to see each other.

Every store has a "look" (``LOOK_*``): how much it looks like a typical counterfeiter. The
truth sets only the look's distribution; prices, storefront, stock, shipping, reviews, text
and login habits each follow the look through a noisy leaning of their own. So a grey-market
genuine store can look shady on several counts and a premium fake clean, and many signals
together estimate the look well but the truth only as well as the look allows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.synth.catalog import CATEGORIES, Catalog

DAY = 86_400
MONTH = 30.44 * DAY
INF = np.iinfo(np.int64).max // 4

# Personas: the kind of store; with its look (below) it drives the behaviours of its events.
REGULAR, SMALL, OUTLET, MULTIBRAND, SECONDHAND, CF_CHEAP, CF_PREMIUM = range(7)
GENUINE_PERSONA_SHARES = (0.48, 0.33, 0.08, 0.07, 0.04)

# Label sources, as indexes into features.contract.LABEL_SOURCES.
TEST_BUY, RIGHTS_HOLDER, COMPLAINT, POLICE = range(4)

CF_SHARE_INITIAL = 0.033  # counterfeit stores before rings re-open banned ones
RING_SHARE = 0.62  # share of initial counterfeit stores that belong to a ring
MAX_RING_STORES = 30
REOPEN_PROBABILITY = 0.75
POLICE_RATE = 0.02  # police raids per ring and month
LABEL_FLIP = 0.02
SECOND_LABEL = 0.08  # share of stores labeled genuine that get checked again later
AUDIT_RATE = 0.0009  # random test-buy audits per store and month
ESCALATION = 0.35  # share of counterfeit disputes that escalate into a spot-check
ORDERS_PER_MONTH = 3.5  # for a store of size 1

# The look: how much a store looks like a typical counterfeiter (0 spotless, 1 blatant). It
# drives most of a store's behaviours (each through a leaning of its own, LEAN_NOISE), and
# the truth only sets its distribution (Beta parameters by kind of store). The two overlap
# as in real marketplaces: grey-market genuine stores look shady, premium fakes look clean.
LOOK_GENUINE = (1.6, 4.6)
LOOK_CF_CHEAP = (4.0, 1.8)
LOOK_CF_PREMIUM = (2.2, 2.6)
LEAN_NOISE = 0.3
# Share of its gap to the reference price a counterfeit store opened at the end of the period
# has closed already (they learn from the bans of others; see also events.ADAPT_PRICE).
ADAPT_OPEN_PRICE = 0.3


@dataclass(frozen=True)
class Period:
    """The generated period, in seconds since the epoch (UTC), end exclusive."""

    start: int
    end: int

    @property
    def seconds(self) -> int:
        """Length of the period in seconds."""
        return self.end - self.start


@dataclass
class StorePlan:
    """Store-level attributes of the whole marketplace, one array entry per store.

    Stores are in plan order (shuffled), which is also the order events are generated in, so
    ring members and office mates land in different blocks. ``stores`` holds the columns
    (see ``plan_marketplace`` for their meaning), ``labels`` the spot-check results and
    ``rings`` the per-ring attributes.
    """

    stores: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    rings: dict[str, np.ndarray]
    n_offices: int
    n_agencies: int

    @property
    def n(self) -> int:
        """Number of stores."""
        return len(self.stores["is_cf"])


def _exp_times(rng: np.random.Generator, rate_per_month: np.ndarray) -> np.ndarray:
    """Waiting times (seconds) of Poisson processes with the given monthly rates."""
    rate = np.maximum(rate_per_month, 1e-12)
    return np.minimum(rng.exponential(1.0, len(rate)) / rate * MONTH, INF).astype(np.int64)


def _choice(rng: np.random.Generator, weights: np.ndarray, n: int) -> np.ndarray:
    """``n`` draws of indexes with the given (unnormalised) weights."""
    cum = np.cumsum(weights / np.sum(weights))
    return np.minimum(np.searchsorted(cum, rng.random(n), side="right"), len(weights) - 1)


def _famous_share(st: dict[str, np.ndarray], catalog: Catalog) -> np.ndarray:
    """Expected share of a store's listings that carry a famous brand."""
    count = catalog.category_brand_count[st["category"]]
    from_category = st["famous_pref"] + (1 - st["famous_pref"]) * 3 / count
    home_famous = catalog.brand_famous[st["home_brand"]].astype(float)
    return st["branded_share"] * (st["p_home"] * home_famous + (1 - st["p_home"]) * from_category)


def _lean(rng: np.random.Generator, look: np.ndarray, noise: float = LEAN_NOISE) -> np.ndarray:
    """One behaviour's leaning, in [0, 1]: the store's look plus noise of its own.

    Each behaviour draws its own leaning, so a store that looks shady in one respect need
    not in every other, and no behaviour follows the truth more closely than the look does.
    """
    return np.clip(look + rng.normal(0, noise, len(look)), 0, 1)


def _base_stores(
    rng: np.random.Generator,
    persona: np.ndarray,
    look: np.ndarray,
    opened: np.ndarray,
    close: np.ndarray,
    category: np.ndarray,
    period: Period,
    catalog: Catalog,
) -> dict[str, np.ndarray]:
    """Draw the attributes shared by every kind of store.

    Most behaviours follow the store's ``look`` through a leaning of their own (see
    ``_lean``), whatever the truth; only the persona adds what is specific to a kind of
    store (outlets sell below reference, small shops keep the basic template, ...).

    Args:
        rng: Random generator.
        persona: Persona code per store.
        look: How much each store looks like a typical counterfeiter, in [0, 1].
        opened: ``opened_at`` per store (seconds).
        close: Natural end of activity per store, before any ban.
        category: Category index per store.
        period: Generated period.
        catalog: Vocabulary.

    Returns:
        Column name -> array.
    """
    n = len(persona)
    cf = persona >= CF_CHEAP
    open_frac = np.clip((opened - period.start) / period.seconds, 0, 1)
    # Storefront: shady-looking stores keep the basic template; counterfeiters who opened
    # later invest in custom storefronts (they adapt).
    shop = _lean(rng, look) - np.where(cf, 0.25 * open_frac, 0.0)
    kind = np.select(
        [persona == SMALL, persona == SECONDHAND, persona == OUTLET], [0.3, 0.2, -0.1], 0.0
    )
    basic = rng.random(n) < np.clip(0.05 + 0.8 * shop + kind, 0.02, 0.97)
    modules = np.where(basic, rng.poisson(1.0, n), 3 + rng.poisson(6.0, n))
    size = np.exp(rng.normal(-0.72, 1.2, n))  # lognormal with mean 1: a few big stores
    size *= np.select(
        [persona == SMALL, persona == OUTLET, persona == MULTIBRAND, persona == SECONDHAND],
        [0.35, 3, 2, 0.6],
        1,
    )
    # Some counterfeiters leave the brand field empty to stay out of brand searches.
    branded = np.select(
        [persona == SMALL, persona == REGULAR, persona == OUTLET, persona == MULTIBRAND,
         persona == SECONDHAND, cf & (rng.random(n) < 0.25)],
        [0.30, 0.60, 0.97, 0.90, 0.9, 0.15],
        0.80,
    )  # fmt: skip
    # Brand mix: shady stores chase famous brands across categories.
    brands = _lean(rng, look)
    famous_pref = np.where(persona == SECONDHAND, 0.5, 0.1 + 0.7 * brands)
    p_home = np.select(
        [persona == OUTLET, (persona == MULTIBRAND) | (persona == SECONDHAND)],
        [0.9, 0.1],
        0.8 - 0.65 * brands,
    )
    start = catalog.category_brand_start[category]
    count = catalog.category_brand_count[category]
    pick_famous = rng.random(n) < famous_pref
    home_brand = start + np.where(
        pick_famous, rng.integers(0, 3, n), (rng.random(n) * count).astype(np.int64)
    )
    # Price level against the reference price (counterfeits adapt upwards over time later);
    # discounters and clearance sellers are genuine and far below it.
    # Clean-looking stores price at the reference; from a leaning of 0.35 on, the price
    # falls to about 15% of it for the blatant fakes.
    level = 1.0 - 0.85 * np.clip((_lean(rng, look, 0.15) - 0.35) / 0.5, 0, 1)
    discounter = ((persona == MULTIBRAND) & (rng.random(n) < 0.4)) | (
        (persona == REGULAR) & (rng.random(n) < 0.04)
    )
    price_center = np.select(
        [persona == OUTLET, discounter, persona == SECONDHAND],
        [rng.uniform(0.5, 0.8, n), rng.uniform(0.4, 0.85, n), rng.uniform(0.25, 0.6, n)],
        level * np.exp(rng.normal(0, 0.05, n)),
    )
    # Counterfeiters who open later have learned: they start closer to the reference.
    price_center += np.where(cf, ADAPT_OPEN_PRICE * open_frac * np.maximum(1 - price_center, 0), 0)
    # A share of listings at another price: genuine stock at full price among a
    # counterfeiter's fakes, clearance sales among a genuine store's goods.
    alt_price_share = np.where(
        cf, rng.uniform(0, 0.3, n), np.where(rng.random(n) < 0.3, rng.uniform(0, 0.25, n), 0.0)
    )
    alt_price = np.where(cf, rng.uniform(0.88, 1.05, n), rng.uniform(0.3, 0.65, n))
    # Operations: stock, shipping, losses. Wholesalers of every kind declare bulk stock;
    # cross-border shippers and consolidators are slow, domestic warehouses fast.
    ops = _lean(rng, look)
    wholesaler = rng.random(n) < np.where(persona == OUTLET, 0.4, 0.06)
    stock_mean = np.exp(2.4 + 1.6 * ops + rng.normal(0, 0.8, n))
    stock_mean *= np.where(wholesaler, rng.uniform(5, 25, n), 1.0)
    slow = rng.random(n) < 0.04 + 0.4 * _lean(rng, look) ** 2
    ship_delay = rng.uniform(0, 1.5, n) + np.where(slow, rng.uniform(2.5, 9, n), 0.0)
    # Most orders leave from the declared region; stores that ship from elsewhere (a hub,
    # the production region) do it for most of their orders.
    elsewhere = rng.random(n) < 0.02 + 0.9 * _lean(rng, look, 0.15) ** 2
    p_ship_alt = np.where(elsewhere, rng.uniform(0.4, 1.0, n), rng.beta(1, 30, n))
    # Quality of the goods as buyers see it: cheap fakes disappoint, premium fakes less so.
    q = _lean(rng, look)
    quality = np.where(cf, 1 - q, 1 - 0.35 * q)
    reviews = _lean(rng, look)
    text = _lean(rng, look)
    replica_store = cf & (rng.random(n) < 0.15 + 0.55 * text)
    return {
        "persona": persona.astype(np.int8),
        "is_cf": cf,
        "look": look,
        "opened_at": opened.astype(np.int64),
        "active_from": np.maximum(opened, period.start).astype(np.int64),
        "close": close.astype(np.int64),
        "category": category.astype(np.int64),
        "basic": basic,
        "modules": modules.astype(np.int64),
        "identity_verified": rng.random(n) < 0.96 - 0.35 * _lean(rng, look),
        "size": size,
        "branded_share": branded,
        "famous_pref": famous_pref,
        "p_home": p_home,
        "p_anycat": np.where(persona == MULTIBRAND, 0.2, 0.02 + 0.3 * brands**2),
        "home_brand": home_brand.astype(np.int64),
        "price_center": price_center,
        "price_sigma": rng.uniform(0.03, 0.1, n) + 0.12 * _lean(rng, look),
        "alt_price_share": alt_price_share,
        "alt_price": alt_price,
        "stock_mean": stock_mean,
        "ship_delay": ship_delay,
        "p_ship_alt": p_ship_alt,
        "p_lost": 0.005 + 0.03 * _lean(rng, look),
        "quality": quality,
        "p_return": 0.02 + 0.07 * (1 - quality),
        "p_not_described": 0.002 + 0.012 * (1 - quality),
        "replica_share": np.where(replica_store, rng.uniform(0.05, 0.45, n), 0.0),
        "dupe_shop": ~cf & (rng.random(n) < 0.01 + 0.03 * text),
        # Honest words a keyword filter may take for slang ("OEM", "AAA batteries").
        "harmless_share": np.where(rng.random(n) < 0.3, rng.uniform(0, 0.15, n), 0.0),
        # Authenticity claims printed on product images ("not a replica", "no copies").
        "ocr_claim": np.where(rng.random(n) < 0.12 + 0.1 * text, rng.uniform(0.05, 0.5, n), 0.0),
        # Reviews: how often buyers review, and bought reviews (bursts) for shady stores.
        "p_review": rng.uniform(0.12, 0.45, n),
        "fake_reviews": rng.random(n) < 0.02 + 0.6 * reviews**2,
        "burst_reviewed": rng.uniform(0.35, 1.0, n),
        "burst_long": rng.uniform(0, 0.7, n) * (1 - reviews),
        # Share of unhappy reviews that call the goods fake: buyers of fakes who notice,
        # and buyers of genuine goods who suspect a low price.
        "p_fake_words": np.where(
            cf, 0.15 + 0.55 * (1 - quality), 0.02 + 0.2 * np.clip(0.95 - price_center, 0, 1)
        ),
        # Share of happy reviews that vouch for authenticity ("not fake!").
        "p_authentic": rng.uniform(0, 0.05, n),
        # How often happy buyers leave a one-liner (or the platform's default good review).
        "short_pref": rng.beta(2.0, 2.5, n),
        "proxy_user": rng.random(n) < 0.02 + 0.3 * _lean(rng, look) ** 2,
    }


def _dispute_rates(rng: np.random.Generator, st: dict[str, np.ndarray]) -> np.ndarray:
    """Per-order probability of a counterfeit dispute (noisy: buyers err and lie).

    Buyers of fakes complain the more the worse the goods; buyers of cheap genuine goods
    sometimes suspect fakes, and a few stores attract false complaints (competitors).
    """
    n = len(st["is_cf"])
    cheap = np.clip(0.9 - st["price_center"], 0, 1)
    return np.select(
        [st["is_cf"], st["false_complaints"]],
        [rng.uniform(0.3, 1.0, n) * (0.002 + 0.035 * (1 - st["quality"])),
         rng.uniform(0.005, 0.02, n)],
        0.0003 + 0.005 * cheap,
    )  # fmt: skip


def _draw_labels(
    rng: np.random.Generator, st: dict[str, np.ndarray], raid: np.ndarray, period: Period,
    catalog: Catalog,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Decide spot-checks and bans for a set of stores; shortens ``st["close"]`` on a ban.

    Each check channel is a Poisson process from the store's first active day: escalated
    counterfeit complaints (rate from its dispute rate and sales), rights-holder notices
    (famous brands), random audits, and police raids on rings. The first event triggers a
    check; a genuine verdict may be followed by a second check later.

    Args:
        rng: Random generator.
        st: Store columns; ``close`` is updated in place for banned stores.
        raid: Police raid time of each store's ring (``INF`` if none).
        period: Generated period.
        catalog: Vocabulary.

    Returns:
        Label columns: ``store`` (index into ``st``), ``labeled_at``, ``is_counterfeit``,
        ``source``, ``trigger_at`` (time of the evidence that triggered the check).
    """
    n = len(st["is_cf"])
    a, close = st["active_from"], st["close"]
    orders_pm = ORDERS_PER_MONTH * st["size"]
    famous = _famous_share(st, catalog)
    rights_rate = np.where(st["is_cf"], 0.05, 0.0015) * famous * np.sqrt(st["size"])
    rights_rate *= np.where(st["persona"] == OUTLET, 0.2, 1.0)  # authorised outlets
    lead = 3 * DAY  # the first evidence needs a few days of trading
    times = np.stack(
        [
            a + lead + _exp_times(rng, np.full(n, AUDIT_RATE)),
            a + lead + _exp_times(rng, rights_rate),
            a + lead + _exp_times(rng, ESCALATION * orders_pm * st["p_cf_dispute"]),
            np.where((raid >= a + lead) & (raid < INF), raid, INF),
        ]
    )
    source = np.argmin(times, axis=0)
    trigger = times[source, np.arange(n)]
    delay_days = np.choose(
        source, [rng.uniform(5, 25, n), rng.uniform(7, 40, n), rng.uniform(3, 21, n),
                 rng.uniform(1, 7, n)]
    )  # fmt: skip
    labeled_at = trigger + (delay_days * DAY).astype(np.int64)
    first = np.flatnonzero((trigger < close) & (labeled_at < period.end))
    truth = st["is_cf"].astype(np.int64)
    value = truth[first] ^ (rng.random(len(first)) < LABEL_FLIP)

    # A genuine verdict may be re-checked later (new complaints or a repeat audit).
    again = first[(value == 0) & (rng.random(len(first)) < SECOND_LABEL)]
    trigger2 = labeled_at[again] + (rng.uniform(30, 240, len(again)) * DAY).astype(np.int64)
    source2 = np.where(st["is_cf"][again] | st["false_complaints"][again], COMPLAINT, TEST_BUY)
    labeled2 = trigger2 + (rng.uniform(5, 25, len(again)) * DAY).astype(np.int64)
    ok = (trigger2 < close[again]) & (labeled2 < period.end)
    again, trigger2, source2, labeled2 = again[ok], trigger2[ok], source2[ok], labeled2[ok]
    value2 = truth[again] ^ (rng.random(len(again)) < LABEL_FLIP)

    stores = np.concatenate([first, again])
    labels = {
        "store": stores,
        "labeled_at": np.concatenate([labeled_at[first], labeled2]),
        "is_counterfeit": np.concatenate([value, value2]).astype(np.int64),
        "source": np.concatenate([source[first], source2]).astype(np.int64),
        "trigger_at": np.concatenate([trigger[first], trigger2]),
    }
    # A counterfeit verdict gets the store banned within days; its activity stops there.
    banned = labels["is_counterfeit"] == 1
    ban_at = labels["labeled_at"][banned] + (rng.uniform(0.5, 7, banned.sum()) * DAY).astype(
        np.int64
    )
    np.minimum.at(close, stores[banned], ban_at)
    return labels


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate column dicts with the same keys."""
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _plan_counterfeit(
    rng: np.random.Generator, n_stores: int, period: Period, catalog: Catalog
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Plan the counterfeit stores: solo ones and rings, including re-opened stores.

    Returns:
        Store columns, label columns (``store`` indexes the store columns) and ring columns.
    """
    n_initial = max(3, round(n_stores * CF_SHARE_INITIAL))
    sizes: list[int] = []
    while sum(sizes) < RING_SHARE * n_initial:
        sizes.append(int(np.clip(round(np.exp(rng.normal(1.6, 0.6))), 3, 20)))
    ring_sizes = np.array(sizes, dtype=np.int64)
    n_rings = len(ring_sizes)
    cf_weights = np.array([w[1] for w in CATEGORIES.values()])
    rings = {
        "start": rng.integers(period.start - 180 * DAY, period.end - 180 * DAY, n_rings),
        "category": _choice(rng, cf_weights, n_rings),
        "production": catalog.production_regions[_choice(rng, catalog.production_weights, n_rings)],
        "devices": rng.integers(2, 7, n_rings),
        "wifis": rng.integers(1, 4, n_rings),
        "fake_buyers": rng.integers(8, 41, n_rings),
        # Operational care differs by ring: how many logins happen at the den, and how
        # many members use the den's machines rather than only its network.
        "den_share": rng.uniform(0.3, 0.85, n_rings),
        "device_use": rng.uniform(0.4, 1.0, n_rings),
        # Dens in a co-working space share its Wi-Fi and IP with honest tenants (set later).
        "office": np.full(n_rings, -1, dtype=np.int64),
    }
    raid = np.maximum(rings["start"], period.start) + _exp_times(rng, np.full(n_rings, POLICE_RATE))
    rings["raid"] = np.where(raid < period.end, raid, INF)
    n_solo = max(0, n_initial - int(ring_sizes.sum()))
    ring = np.concatenate([np.repeat(np.arange(n_rings), ring_sizes), np.full(n_solo, -1)])
    n0 = len(ring)
    in_ring = ring >= 0
    solo_open = np.where(
        rng.random(n0) < 0.3,
        period.start - rng.integers(0, 2 * 365 * DAY, n0),
        rng.integers(period.start, period.end - 14 * DAY, n0),
    )
    ring_open = rings["start"][np.maximum(ring, 0)] + rng.integers(0, 150 * DAY, n0)
    opened = np.minimum(np.where(in_ring, ring_open, solo_open), period.end - 14 * DAY)
    parts, label_parts, offset, generation = [], [], 0, 0
    ring_count = np.bincount(ring[in_ring], minlength=n_rings)
    while len(ring):
        st = _cf_stores(rng, ring, opened, rings, period, catalog)
        st["reopened"] = np.full(len(ring), generation > 0)
        generation += 1
        raid = np.where(ring >= 0, rings["raid"][np.maximum(ring, 0)], INF)
        labels = _draw_labels(rng, st, raid, period, catalog)
        labels["store"] = labels["store"] + offset
        parts.append(st)
        label_parts.append(labels)
        # Banned ring stores re-open under a new identity on the same devices and Wi-Fi.
        banned = labels["store"][(labels["is_counterfeit"] == 1) & (labels["source"] != POLICE)]
        banned = np.unique(banned - offset)
        cand = banned[(ring[banned] >= 0) & (rng.random(len(banned)) < REOPEN_PROBABILITY)]
        new_open = st["close"][cand] + rng.integers(2 * DAY, 45 * DAY, len(cand))
        limit = np.minimum(period.end - 14 * DAY, rings["raid"][ring[cand]])
        cand, new_open = cand[new_open < limit], new_open[new_open < limit]
        order = np.lexsort((new_open, ring[cand]))
        cand, new_open = cand[order], new_open[order]
        rank = np.arange(len(cand)) - np.searchsorted(ring[cand], ring[cand])
        keep = ring_count[ring[cand]] + rank < MAX_RING_STORES
        cand, new_open = cand[keep], new_open[keep]
        np.add.at(ring_count, ring[cand], 1)
        offset += len(ring)
        ring, opened = ring[cand], new_open
    return _concat(parts), _concat(label_parts), rings


def _cf_stores(
    rng: np.random.Generator,
    ring: np.ndarray,
    opened: np.ndarray,
    rings: dict[str, np.ndarray],
    period: Period,
    catalog: Catalog,
) -> dict[str, np.ndarray]:
    """Attributes of counterfeit stores (ring members when ``ring >= 0``)."""
    n = len(ring)
    in_ring = ring >= 0
    r = np.maximum(ring, 0)
    persona = np.where(rng.random(n) < 0.67, CF_CHEAP, CF_PREMIUM)
    look = np.where(persona == CF_CHEAP, rng.beta(*LOOK_CF_CHEAP, n), rng.beta(*LOOK_CF_PREMIUM, n))
    cf_weights = np.array([w[1] for w in CATEGORIES.values()])
    category = np.where(
        in_ring & (rng.random(n) < 0.7), rings["category"][r], _choice(rng, cf_weights, n)
    )
    # Some stores walk away on their own before any check reaches them.
    close = np.where(
        rng.random(n) < 0.2, opened + (rng.uniform(0.2, 1, n) * (period.end - opened)), period.end
    ).astype(np.int64)
    st = _base_stores(rng, persona, look, opened, close, category, period, catalog)
    production = np.where(
        in_ring,
        rings["production"][r],
        catalog.production_regions[_choice(rng, catalog.production_weights, n)],
    )
    declared = np.where(rng.random(n) < 0.1, production, _choice(rng, catalog.region_weights, n))
    st.update(
        ring=ring.astype(np.int64),
        declared=declared.astype(np.int64),
        ship_alt=production.astype(np.int64),
        false_complaints=np.zeros(n, dtype=bool),
        # Rings run review farms for their members.
        fake_reviews=st["fake_reviews"] | (in_ring & (rng.random(n) < 0.25)),
        # Not every ring member logs in on the den's machines; some only share its network.
        ring_device_use=in_ring & (rng.random(n) < rings["device_use"][r]),
    )
    st["p_cf_dispute"] = _dispute_rates(rng, st)
    return st


def _plan_genuine(
    rng: np.random.Generator, n: int, period: Period, catalog: Catalog
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Plan ``n`` genuine stores with their confounders, and their labels."""
    persona = _choice(rng, np.array(GENUINE_PERSONA_SHARES), n)
    category = _choice(rng, np.array([w[0] for w in CATEGORIES.values()]), n)
    old = rng.random(n) < 0.45
    opened = np.where(
        old,
        period.start - rng.integers(1, 5 * 365 * DAY, n),
        rng.integers(period.start, period.end - 7 * DAY, n),
    )
    active_from = np.maximum(opened, period.start)
    churn = rng.random(n) < 0.12
    close = np.where(
        churn, active_from + (rng.uniform(0.1, 1, n) * (period.end - active_from)), period.end
    ).astype(np.int64)
    look = rng.beta(*LOOK_GENUINE, n)
    st = _base_stores(rng, persona, look, opened, close, category, period, catalog)
    declared = _choice(rng, catalog.region_weights, n)
    # Those that ship from elsewhere use a fulfilment hub in another region.
    hubs = catalog.hub_regions
    k = rng.integers(0, len(hubs), n)
    hub = np.where(hubs[k] == declared, hubs[(k + 1) % len(hubs)], hubs[k])
    false_complaints = rng.random(n) < 0.04
    st.update(
        ring=np.full(n, -1, dtype=np.int64),
        declared=declared.astype(np.int64),
        ship_alt=hub.astype(np.int64),
        false_complaints=false_complaints,
        ring_device_use=np.zeros(n, dtype=bool),
        reopened=np.zeros(n, dtype=bool),
    )
    st["p_cf_dispute"] = _dispute_rates(rng, st)
    labels = _draw_labels(rng, st, np.full(n, INF), period, catalog)
    return st, labels


def _groups(rng: np.random.Generator, members: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Split ``members`` (already in the order to chunk) into groups of ``lo..hi``."""
    sizes = rng.integers(lo, hi + 1, len(members) // lo + 1)
    group = np.repeat(np.arange(len(sizes)), sizes)[: len(members)]
    return group


def _share_within(values: np.ndarray, members: np.ndarray, group: np.ndarray) -> None:
    """Give every member the value of its group's first member (in place)."""
    order = np.argsort(group, kind="stable")
    members, group = members[order], group[order]
    first = np.searchsorted(group, group)
    values[members] = values[members[first]]


def _shared_places(
    rng: np.random.Generator, st: dict[str, np.ndarray], rings: dict[str, np.ndarray]
) -> tuple[int, int]:
    """Assign stores to offices, agencies and family businesses, and rings to co-working dens.

    Offices (shared Wi-Fi and IP) are co-working spaces or e-commerce parks in one region,
    with honest and dishonest tenants alike. Agencies run the shops of a few clients on
    their own machines. Family businesses run a few stores on the same machines under one
    seller (added to the agency id space; ``family`` marks them for the seller ids), and
    some families run a counterfeit store beside their honest ones. Some rings keep their
    den in an office, so honest tenants share its Wi-Fi and IP.

    Returns:
        Number of offices and of agencies (families included).
    """
    n = len(st["is_cf"])
    cf = st["is_cf"]
    for column in ("office", "agency", "family"):
        st[column] = np.full(n, -1, dtype=np.int64)
    counts = []
    solo_cf = cf & (st["ring"] < 0)
    for column, share, lo, hi in (
        ("office", np.full(n, 0.09), 2, 20),
        ("agency", np.where(cf, 0.08, 0.05), 2, 6),
        ("family", np.select([~cf, solo_cf], [0.06, 0.15], 0.0), 2, 4),
    ):
        chosen = np.flatnonzero(rng.random(n) < share)
        chosen = chosen[np.argsort(st["declared"][chosen], kind="stable")]
        group = _groups(rng, chosen, lo, hi)
        st[column][chosen] = group
        counts.append(int(group.max()) + 1 if len(group) else 0)
    n_offices, n_agencies, _ = counts
    family = st["family"] >= 0
    st["agency"][family] = n_agencies + st["family"][family]
    if n_offices:
        in_office = rng.random(len(rings["start"])) < 0.3
        rings["office"] = np.where(
            in_office, rng.integers(0, n_offices, len(in_office)), -1
        ).astype(np.int64)
    return n_offices, n_agencies + counts[2]


def _sellers(rng: np.random.Generator, st: dict[str, np.ndarray]) -> np.ndarray:
    """Seller account numbers: one per store, shared by family businesses and some rings.

    A ring may put several of its first members under one seller; a store re-opened after
    a ban always comes with a new seller.
    """
    n = len(st["is_cf"])
    seller = rng.choice(10 * n, n, replace=False)
    family = np.flatnonzero(st["family"] >= 0)
    _share_within(seller, family, st["family"][family])
    ring = st["ring"]
    n_rings = int(ring.max()) + 1 if (ring >= 0).any() else 0
    sloppy = rng.random(n_rings) < 0.3
    members = np.flatnonzero((ring >= 0) & ~st["reopened"])
    members = members[sloppy[ring[members]] & (rng.random(len(members)) < 0.7)]
    members = members[np.argsort(ring[members], kind="stable")]
    # Groups of two or three, never across rings: the ring number keys the group.
    chunk = _groups(rng, members, 2, 3)
    _share_within(seller, members, ring[members] * n + chunk)
    return seller


def plan_marketplace(n_stores: int, seed: int, period: Period, catalog: Catalog) -> StorePlan:
    """Plan every store of the marketplace, its labels, bans, rings and shared places.

    Args:
        n_stores: Total number of stores, re-opened ring stores included.
        seed: Random seed.
        period: Generated period.
        catalog: Vocabulary.

    Returns:
        The plan, stores shuffled into generation order.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    cf, cf_labels, rings = _plan_counterfeit(rng, n_stores, period, catalog)
    n_cf = len(cf["is_cf"])
    if n_cf >= n_stores:
        raise ValueError(f"{n_stores} stores are too few for a marketplace; use >= 100")
    genuine, g_labels = _plan_genuine(rng, n_stores - n_cf, period, catalog)
    g_labels["store"] = g_labels["store"] + n_cf
    st = _concat([cf, genuine])
    labels = _concat([cf_labels, g_labels])
    # Shuffle into generation order so rings and offices spread over all blocks.
    order = rng.permutation(n_stores)
    st = {k: v[order] for k, v in st.items()}
    inverse = np.empty(n_stores, dtype=np.int64)
    inverse[order] = np.arange(n_stores)
    labels["store"] = inverse[labels["store"]]
    n_offices, n_agencies = _shared_places(rng, st, rings)
    st["mobile_share"] = rng.beta(2, 5, n_stores)
    st["devices"] = rng.integers(1, 4, n_stores)
    # Private Wi-Fi networks a store logs in from (home, shop, warehouse, ...).
    st["wifis"] = 1 + rng.binomial(3, 0.25, n_stores)
    # Platform ids grow with the opening date; sellers come from a wider account space.
    st["store_num"] = np.empty(n_stores, dtype=np.int64)
    st["store_num"][np.lexsort((np.arange(n_stores), st["opened_at"]))] = np.arange(1, n_stores + 1)
    st["seller_num"] = _sellers(rng, st)
    labels = {k: v[np.lexsort((labels["labeled_at"], labels["store"]))] for k, v in
              labels.items()}  # fmt: skip
    return StorePlan(st, labels, rings, n_offices, n_agencies)
