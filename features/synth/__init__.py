"""The synthetic marketplace: store histories with known truth, for development and tests.

``generate.generate_marketplace`` is the entry point (``spotcheck synth``). ``plan`` plans
every store up front (rings, shared offices, labels, bans, re-opened stores), ``events``
generates each block's events from the plan, ``accounts`` the ids and logins, ``catalog``
the brands, prices and texts the generator uses, and ``tables`` formats the blocks into
contract tables. It imports only ``features.contract`` (and ``features.spec``): the
generator knows the data contract, never the detector, so its vocabulary is its own.
"""
