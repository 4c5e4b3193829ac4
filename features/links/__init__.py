"""Link-graph features: stores linked through a shared device, Wi-Fi network or IP address.

Counterfeit sellers run rings of stores that share devices, Wi-Fi and IPs, and banned rings
re-open under new seller identities on the same devices. Genuine stores share IPs too
(carrier NAT, shared offices), so a resource used by more stores than a per-kind cap says
nothing and stops linking anyone from the moment it passes the cap.

Two steps, usable separately:

* :func:`login_links` (``derive``) derives time-stamped store-store links from the
  ``logins`` view (DuckDB SQL, scales to tens of millions of logins).
* :func:`add_link_features` (``features``) appends link features to ANY feature table (one
  row per store and optional as-of time) given a links table and optional labels, so teams
  that already have their own store features can add link features to them.

Point in time: a row for (store, as-of T) counts a link only if ``linked_at < T`` and
(``unlinked_at`` is null or ``unlinked_at >= T``), and a label only if ``labeled_at < T``.
The row's own store's label never counts, not even through a cycle in its ring.

Modules: ``inputs`` (checks and the error type), ``graph`` (the links and labels as arrays,
point-in-time lookups), ``rings`` (connected components at each row's as-of time),
``spec`` (the FeatureSpec of the link columns), ``features`` (the features themselves),
``snapshots`` (the extra rows the builder needs for neighbour aggregates).
"""

from features.links.derive import DEFAULT_MAX_STORES_PER, LINK_KINDS, login_links
from features.links.features import LinkGraphPart, add_link_features, link_graph_part
from features.links.inputs import LinkGraphError
from features.links.rings import DEFAULT_MAX_RING_SIZE
from features.links.snapshots import neighbour_snapshots
from features.links.spec import LINK_PREFIX, LinkOptions

__all__ = [
    "DEFAULT_MAX_RING_SIZE",
    "DEFAULT_MAX_STORES_PER",
    "LINK_KINDS",
    "LINK_PREFIX",
    "LinkGraphError",
    "LinkGraphPart",
    "LinkOptions",
    "add_link_features",
    "link_graph_part",
    "login_links",
    "neighbour_snapshots",
]
