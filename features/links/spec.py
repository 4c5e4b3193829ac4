"""The FeatureSpec of the link columns, and the options that decide which columns exist."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from features.spec import Feature, FeatureSpec

# Prefix of every link-graph column the project's own builder adds.
LINK_PREFIX = "link_"
RECENT_WINDOW = pd.Timedelta(days=30)


GROUP = "link_graph"


_KIND_WORDS = {"device": "a device", "wifi": "a Wi-Fi network", "ip": "an IP address"}


@dataclass(frozen=True)
class LinkOptions:
    """Which feature families apply, decided from the inputs' columns and arguments."""

    prefix: str
    kinds: tuple[str, ...] | None
    recent: bool
    labels: bool
    neighbour_columns: tuple[str, ...]
    max_ring_size: int


def link_spec(options: LinkOptions, base_spec: FeatureSpec | None) -> FeatureSpec:
    """FeatureSpec of the columns ``add_link_features`` appends, in column order."""
    p = options.prefix
    specs = [
        Feature(
            f"{p}linked_stores",
            GROUP,
            "int",
            "other stores sharing a device, Wi-Fi network or IP address with the store "
            "(resources used by too many stores ignored)",
            "higher",
            "shares a device, Wi-Fi or IP with {value:.0f} other store(s)",
        )
    ]
    for kind in options.kinds or ():
        what = _KIND_WORDS.get(kind, f"a {kind}")
        specs.append(
            Feature(
                f"{p}{kind}_stores",
                GROUP,
                "int",
                f"other stores sharing {what} with the store",
                "higher",
                f"shares {what} with {{value:.0f}} other store(s)",
            )
        )
    specs.append(
        Feature(
            f"{p}ring_size",
            GROUP,
            "int",
            "stores in the store's ring (itself plus every store reachable through shared "
            f"devices, Wi-Fi or IPs), capped at {options.max_ring_size}",
            "higher",
            "belongs to a ring of {value:.0f} stores linked by shared devices, Wi-Fi or IPs",
        )
    )
    if options.recent:
        specs.append(
            Feature(
                f"{p}new_linked_stores_30d",
                GROUP,
                "int",
                "stores first linked to the store in the 30 days before the as-of time",
                "higher",
                "became linked to {value:.0f} store(s) in the last 30 days",
            )
        )
    if options.labels:
        specs += _label_specs(options)
    specs += _neighbour_specs(options, base_spec)
    return FeatureSpec(tuple(specs))


def _label_specs(options: LinkOptions) -> list[Feature]:
    """Spec entries of the label-based features."""
    p = options.prefix
    specs = [
        Feature(
            f"{p}known_counterfeit",
            GROUP,
            "int",
            "linked stores already caught selling counterfeits (labels known before the "
            "as-of time)",
            "higher",
            "shares a device, Wi-Fi or IP with {value:.0f} store(s) already caught selling "
            "counterfeits",
        ),
        Feature(
            f"{p}known_counterfeit_share",
            GROUP,
            "float",
            "share of counterfeit stores among the linked stores labelled before the as-of "
            "time (missing when none is labelled)",
            "higher",
            "{value:.0%} of the checked stores it shares a device, Wi-Fi or IP with sold "
            "counterfeits",
        ),
        Feature(
            f"{p}known_genuine",
            GROUP,
            "int",
            "linked stores confirmed genuine (labels known before the as-of time)",
            "lower",
            "shares a device, Wi-Fi or IP with {value:.0f} store(s) confirmed genuine",
        ),
        Feature(
            f"{p}labeled_linked_stores",
            GROUP,
            "int",
            "linked stores with any label known before the as-of time",
            "none",
            "{value:.0f} of its linked stores have been checked before",
        ),
    ]
    for kind in options.kinds or ():
        what = _KIND_WORDS.get(kind, f"a {kind}")
        specs.append(
            Feature(
                f"{p}{kind}_known_counterfeit",
                GROUP,
                "int",
                f"stores sharing {what} with the store that were already caught selling "
                "counterfeits",
                "higher",
                f"shares {what} with {{value:.0f}} store(s) already caught selling counterfeits",
            )
        )
    specs.append(
        Feature(
            f"{p}ring_known_counterfeit",
            GROUP,
            "float",
            "stores in the store's ring (any number of hops, not the store itself) already "
            f"caught selling counterfeits; missing when the ring exceeds "
            f"{options.max_ring_size} stores",
            "higher",
            "its ring of linked stores includes {value:.0f} store(s) already caught selling "
            "counterfeits",
        )
    )
    return specs


def _neighbour_specs(options: LinkOptions, base_spec: FeatureSpec | None) -> list[Feature]:
    """Spec entries of the neighbour mean/max aggregates."""
    specs = []
    for column in options.neighbour_columns:
        known = base_spec is not None and column in base_spec.names
        base = base_spec[column] if known else None
        what = base.description if base else column
        direction = base.risk_direction if base else "none"
        for stat, word in (("mean", "on average"), ("max", "at most")):
            # Reuse the base feature's sentence so reviewers read e.g. "its linked stores,
            # on average: sells at 53% of the brand's reference price".
            reason = (
                f"its linked stores, {word}: {base.reason_template}"
                if base
                else f"its linked stores, {word}: {column} = {{value:.3g}}"
            )
            specs.append(
                Feature(
                    f"{options.prefix}nb_{stat}_{column}",
                    GROUP,
                    "float",
                    f"{stat} over linked stores of: {what}",
                    direction,
                    reason,
                )
            )
    return specs
