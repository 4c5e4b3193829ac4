"""Point-in-time store features: every group but the link graph.

Each feature is declared once, beside the SQL that computes it (``dialect.feature``), in the
module of its family: ``storefront``, ``catalogue`` (pricing against the brand's reference
price, listing text), ``orders`` (sales, buyers, logistics), ``reviews``, ``disputes``,
``environment`` (logins, devices, Wi-Fi, IPs). ``snapshots`` holds the (store, as-of) rows
every stage joins to, ``vocabulary`` the detector's text patterns, ``pipeline`` puts the
families in order and renders the SQL for a ``Dialect`` (DuckDB or Spark), and ``engine``
runs it on DuckDB. A row for (store, T) uses only events strictly before T.
"""
