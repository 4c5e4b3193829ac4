"""The spot-check loop: replaying monthly test-buys with retraining (``backtest``).

It sits above ``training`` and ``serving`` (it trains, promotes and queues as a team would
each month) and imports both; neither imports it.
"""


class LoopError(Exception):
    """A backtest that cannot run as asked (the message says what and where)."""
