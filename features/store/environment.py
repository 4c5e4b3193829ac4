"""Account-environment features: logins, IPs, devices, Wi-Fi networks, night-time use."""

from __future__ import annotations

from features.store.dialect import (
    Dialect,
    FeatureDef,
    Keep,
    Stage,
    aggregate_select,
    days_before_as_of,
    div,
    event_join,
    feature,
    zero,
)
from features.store.snapshots import BURST_WINDOW

# Logins at these UTC hours count as night-time (a marketplace with one time zone can shift
# the window; the feature is about accounts run from elsewhere or by scripts).
NIGHT_HOURS = (0, 6)


def _logins_stage(_d: Dialect, keep: Keep = None) -> str:
    start, end = NIGHT_HOURS
    aggregates = {
        "g_n": "count(*)",
        "g_n30": "count(*) FILTER (WHERE e.logged_at >= s.t30)",
        "g_no_wifi": "count(*) FILTER (WHERE e.wifi_id IS NULL)",
        "g_night": (
            f"count(*) FILTER (WHERE hour(e.logged_at) >= {start} AND hour(e.logged_at) < {end})"
        ),
        "g_last": "max(e.logged_at)",
    }
    return aggregate_select(aggregates, event_join("logins", "logged_at"), keep)


def _login_resources_stage(d: Dialect, _keep: Keep = None) -> str:
    # Distinct IPs, devices and Wi-Fi networks from one join: GROUPING SETS fill the three
    # per-snapshot key sets in one pass (count(DISTINCT ...) would materialize the join).
    # Keys are 64-bit hashes (cheaper than the strings; NULL stays NULL so it is not counted).
    def key(column: str) -> str:
        return f"CASE WHEN e.{column} IS NOT NULL THEN {d.hash(f'e.{column}')} END"

    return f"""
SELECT snap_id,
  count(ip) FILTER (WHERE by_ip = 0) AS gr_ips,
  count(device) FILTER (WHERE by_device = 0) AS gr_devices,
  count(device) FILTER (WHERE by_device = 0 AND recent = 1) AS gr_devices30,
  count(wifi) FILTER (WHERE by_wifi = 0) AS gr_wifi
FROM (
  SELECT snap_id, ip, device, wifi, GROUPING(ip) AS by_ip, GROUPING(device) AS by_device,
    GROUPING(wifi) AS by_wifi, max(recent) AS recent
  FROM (
    SELECT s.snap_id, {key("ip")} AS ip, {key("device_id")} AS device, {key("wifi_id")} AS wifi,
      CASE WHEN e.logged_at >= s.t30 THEN 1 ELSE 0 END AS recent
    {event_join("logins", "logged_at")}
  ) keyed
  GROUP BY GROUPING SETS ((snap_id, ip), (snap_id, device), (snap_id, wifi))
) per_key
GROUP BY snap_id"""


def _login_days_stage(_d: Dialect, _keep: Keep = None) -> str:
    return f"""
SELECT snap_id, count(*) AS gd_days, max(n) AS gd_max, sum(n) AS gd_n
FROM (
  SELECT s.snap_id, CAST(e.logged_at AS DATE) AS day, count(*) AS n
  {event_join("logins", "logged_at")} AND e.logged_at >= s.{BURST_WINDOW}
  GROUP BY s.snap_id, CAST(e.logged_at AS DATE)
) per_day
GROUP BY snap_id"""


STAGES: tuple[Stage, ...] = (
    Stage("logins", "g", "logins", _logins_stage),
    Stage("login_resources", "gr", "logins", _login_resources_stage),
    Stage("login_days", "gd", "logins", _login_days_stage),
)

_LOGINS_NOTE = "over logins before T; NULL if none"

ENVIRONMENT: tuple[FeatureDef, ...] = (
    feature(
        "login_count",
        "environment",
        "int",
        "Account logins before T (0 if none).",
        "none",
        "{value:,.0f} logins",
        zero("g.g_n"),
    ),
    feature(
        "logins_30d",
        "environment",
        "int",
        "Logins in the 30 days before T (0 if none).",
        "none",
        "{value:,.0f} logins in the last 30 days",
        zero("g.g_n30"),
    ),
    feature(
        "login_active_days_90d",
        "environment",
        "int",
        "Distinct UTC days with a login in the 90 days before T (0 if none).",
        "none",
        "logged in on {value:,.0f} different days in the last 90 days",
        zero("gd.gd_days"),
    ),
    feature(
        "logins_per_active_day_90d",
        "environment",
        "float",
        "Logins per day with a login, over the 90 days before T; NULL without logins in them.",
        "higher",
        "{value:.1f} logins per active day",
        div("gd.gd_n", "gd.gd_days"),
    ),
    feature(
        "max_logins_per_day_90d",
        "environment",
        "int",
        "Most logins on a single UTC day in the 90 days before T (0 if none).",
        "higher",
        "{value:,.0f} logins in a single day",
        zero("gd.gd_max"),
    ),
    feature(
        "distinct_ips",
        "environment",
        "int",
        "Distinct IP addresses used to log in before T (0 if none).",
        "higher",
        "logged in from {value:,.0f} different IP addresses",
        zero("gr.gr_ips"),
    ),
    feature(
        "distinct_devices",
        "environment",
        "int",
        "Distinct devices used to log in before T (0 if none).",
        "higher",
        "logged in from {value:,.0f} different devices",
        zero("gr.gr_devices"),
    ),
    feature(
        "distinct_wifi_networks",
        "environment",
        "int",
        "Distinct Wi-Fi networks seen at logins before T (0 if none).",
        "higher",
        "logged in over {value:,.0f} different Wi-Fi networks",
        zero("gr.gr_wifi"),
    ),
    feature(
        "devices_30d",
        "environment",
        "int",
        "Distinct devices used to log in in the 30 days before T (0 if none).",
        "higher",
        "{value:,.0f} devices used in the last 30 days",
        zero("gr.gr_devices30"),
    ),
    feature(
        "ips_per_login",
        "environment",
        "float",
        f"Distinct IPs / logins (IP churn), {_LOGINS_NOTE}.",
        "higher",
        "changes IP address often ({value:.2f} IPs per login)",
        div("gr.gr_ips", "g.g_n"),
    ),
    feature(
        "share_logins_without_wifi",
        "environment",
        "float",
        f"Share of logins with no Wi-Fi network recorded (mobile data, proxies), {_LOGINS_NOTE}.",
        "higher",
        "{value:.0%} of logins came without a Wi-Fi network",
        div("g.g_no_wifi", "g.g_n"),
    ),
    feature(
        "night_login_share",
        "environment",
        "float",
        f"Share of logins between {NIGHT_HOURS[0]:02d}:00 and {NIGHT_HOURS[1]:02d}:00 UTC, "
        f"{_LOGINS_NOTE}.",
        "higher",
        "{value:.0%} of logins happen at night",
        div("g.g_night", "g.g_n"),
    ),
    feature(
        "days_since_last_login",
        "environment",
        "float",
        "Days from the latest login to T; NULL without logins.",
        "none",
        "last login {value:.0f} days ago",
        lambda d: days_before_as_of(d, "g.g_last"),
    ),
)
