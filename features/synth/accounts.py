"""Accounts and the login environment of the synthetic marketplace.

The id spaces of buyers, devices, Wi-Fi networks and IPs are laid out for the whole
marketplace (``IdSpace``), so that ring members, office mates and carrier-NAT neighbours share
the same ids in whichever block they are generated. ``generate_logins`` draws each store's
logins from its channels: home, phone on carrier NAT, shared office, agency, ring den, proxy.
Also holds the small row helpers the event generators share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from features.synth.plan import DAY, MONTH

NAT_IPS_PER_STORE = 40  # carrier-NAT addresses per store: sets how often NAT is shared


@dataclass(frozen=True)
class IdSpace:
    """Where each kind of account, device, Wi-Fi and IP starts in its integer id space.

    Ids are planned for the whole marketplace, so blocks never collide and a ring's devices
    or an office's IP are the same ids wherever its stores are generated. Build it with
    ``IdSpace.plan``.

    Buyers: the general population (``6 n``), per-store loyal pools (64 each), ring fake
    accounts (64 per ring), solo counterfeiters' own fakes (16 per store), a review farm that
    some genuine stores hire, and the platform's test buyers. Devices: 4 per store (slot 3 is
    the phone), 4 per agency, 8 per ring. Wi-Fi: 4 per store (home, shop, warehouse, ...), one
    per office and agency, 4 per ring.
    IPs: 4 home addresses per store over time, one per office and agency, 24 per ring, carrier
    NAT pools per region, and a pool of proxy/VPN exits.
    """

    n: int
    buyers: int
    loyal: int
    ring_fakes: int
    solo_fakes: int
    farm: int
    farm_size: int
    test_buyers: int
    agency_devices: int
    ring_devices: int
    office_wifi: int
    agency_wifi: int
    ring_wifi: int
    office_ip: int
    agency_ip: int
    ring_ip: int
    nat_ip: int
    proxy_ip: int
    proxy_size: int

    @classmethod
    def plan(cls, n: int, n_rings: int, n_offices: int, n_agencies: int) -> IdSpace:
        """Lay out the id spaces of a marketplace of ``n`` stores."""
        farm = 6 * n + 64 * n + 64 * n_rings + 16 * n
        nat_ip = 4 * n + n_offices + n_agencies + 24 * n_rings
        return cls(
            n=n,
            buyers=6 * n,
            loyal=6 * n,
            ring_fakes=6 * n + 64 * n,
            solo_fakes=6 * n + 64 * n + 64 * n_rings,
            farm=farm,
            farm_size=200 + n // 100,
            test_buyers=farm + 200 + n // 100,
            agency_devices=4 * n,
            ring_devices=4 * n + 4 * n_agencies,
            office_wifi=4 * n,
            agency_wifi=4 * n + n_offices,
            ring_wifi=4 * n + n_offices + n_agencies,
            office_ip=4 * n,
            agency_ip=4 * n + n_offices,
            ring_ip=4 * n + n_offices + n_agencies,
            nat_ip=nat_ip,
            proxy_ip=nat_ip + NAT_IPS_PER_STORE * n + 128,
            proxy_size=50 + n // 300,
        )


def repeat_rows(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Owner index of each generated row and the first row of each owner."""
    owner = np.repeat(np.arange(len(counts)), counts)
    return owner, np.cumsum(counts) - counts


def sort_rows(cols: dict[str, np.ndarray], owner: str, time: str) -> dict[str, np.ndarray]:
    """Sort event columns by owner then time."""
    order = np.lexsort((cols[time], cols[owner]))
    return {k: v[order] for k, v in cols.items()}


def rand_below(rng: np.random.Generator, high: np.ndarray) -> np.ndarray:
    """One uniform integer in ``[0, high)`` per entry (``high >= 1``)."""
    return np.minimum((rng.random(len(high)) * high).astype(np.int64), high - 1)


def generate_logins(
    rng: np.random.Generator,
    s: dict[str, np.ndarray],
    ids: IdSpace,
    nat_pools: tuple[np.ndarray, np.ndarray],
    lo: int,
) -> dict[str, np.ndarray]:
    """Logins: home, carrier NAT on the phone, shared office, agency, ring den, proxies."""
    a, c = s["active_from"], s["close"]
    dur = np.maximum(c - a, 1)
    n = 2 + rng.poisson(0.8 * dur / MONTH * s["size"] ** 0.3)
    owner, _ = repeat_rows(n)
    m = len(owner)
    t = a[owner] + (rng.random(m) * dur[owner]).astype(np.int64)
    ring, office, agency = s["ring"][owner], s["office"][owner], s["agency"][owner]
    # Channel: one uniform draw against sequential probabilities, so each store's mix holds.
    p = [
        np.where(ring >= 0, s["ring_den_share"][owner], 0.0),
        np.where(s["proxy_user"][owner], 0.3, 0.0),
        np.where(agency >= 0, 0.6, 0.0),
        np.where(office >= 0, 0.5, 0.0),
        s["mobile_share"][owner],
    ]
    cum, left = [], np.ones(m)
    for q in p:
        cum.append(1 - left + left * q)
        left = left * (1 - q)
    u = rng.random(m)
    channel = np.select([u < cum[0], u < cum[1], u < cum[2], u < cum[3], u < cum[4]],
                        [1, 2, 3, 4, 5], 0)  # fmt: skip
    plan_idx = lo + owner
    r = np.maximum(ring, 0)
    own_device = 4 * plan_idx + rand_below(rng, s["devices"][owner])
    ring_device = ids.ring_devices + 8 * r + rand_below(rng, s["ring_devices"][owner])
    ring_device = np.where(s["ring_device_use"][owner], ring_device, own_device)
    device = np.select(
        [channel == 1, (channel == 2) & (ring >= 0), channel == 3, channel == 5],
        [ring_device, ring_device, ids.agency_devices + 4 * agency + rng.integers(0, 3, m),
         4 * plan_idx + 3],
        own_device,
    )  # fmt: skip
    # A den in a co-working space logs in over the office's Wi-Fi and IP.
    den_office = s["ring_office"][owner]
    ring_wifi = np.where(
        den_office >= 0,
        ids.office_wifi + den_office,
        ids.ring_wifi + 4 * r + rand_below(rng, s["ring_wifis"][owner]),
    )
    ring_wifi = np.where(rng.random(m) < 0.8, ring_wifi, -1)
    ring_ip = np.where(
        (den_office >= 0) & (rng.random(m) < 0.7),
        ids.office_ip + den_office,
        ids.ring_ip + 24 * r + (3 * (t // (90 * DAY)) + rng.integers(0, 3, m)) % 24,
    )
    wifi = np.select(
        [channel == 1, channel == 2, channel == 3, channel == 4, channel == 5],
        [ring_wifi, -1, ids.agency_wifi + agency, ids.office_wifi + office, -1],
        4 * plan_idx + rand_below(rng, s["wifis"][owner]),
    )
    nat_start, nat_size = nat_pools
    region = s["declared"][owner]
    ip = np.select(
        [channel == 1, channel == 2, channel == 3, channel == 4, channel == 5],
        [ring_ip,
         ids.proxy_ip + rng.integers(0, ids.proxy_size, m),
         ids.agency_ip + agency,
         ids.office_ip + office,
         ids.nat_ip + nat_start[region] + rand_below(rng, nat_size[region])],
        4 * plan_idx + (t // (150 * DAY)) % 4,
    )  # fmt: skip
    return sort_rows({"owner": owner, "logged_at": t, "ip": ip, "device": device, "wifi": wifi},
                 "owner", "logged_at")  # fmt: skip
