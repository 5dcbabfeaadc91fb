"""A small client for one proxy's Envoy admin API (Istio's :15000), on 127.0.0.1.

What the sandbox asks a proxy, and where the answer lives (checked on Envoy 1.40):

- the configuration it runs: `/config_dump` (what `istioctl proxy-config` reads);
- its endpoints and their health, outlier ejections included: `/clusters?format=json`;
- the certificates it has loaded (`istioctl proxy-config secret`): `/certs`;
- which configuration version it has applied (the ACK): the text stats
  `listener_manager.lds.version_text`, `cluster_manager.cds.version_text` and, per route
  configuration, `http.<stat_prefix>.rds.<route config name>.version_text`;
- whether it refused one (the NACK): the counters `update_rejected` (Envoy refused the
  resources) and `update_failure` (it could not read them, e.g. a duration written "3m")
  beside each of those, and the reason in its log ("... config update rejected: ...") or, for a
  listener, in the config dump's `error_state`.

A proxy that refuses a configuration keeps serving the previous one.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ...errors import IstiolabError

POLL_INTERVAL = 0.025  # how often wait_for_version looks again: configuration lands in ~20 ms
LOG_WAIT = 1.0  # how long to wait for a counted rejection to reach the log (flushed every 0.1 s)

_VERSION_STATS = "version_text$"
_REJECTION_STATS = (
    r"(listener_manager\.lds|cluster_manager\.cds|\.rds\..*)\.update_(rejected|failure)$"
)
_DRAINING_STATS = r"^listener_manager\.total_(listeners|filter_chains)_draining$"
_HCM = "envoy.filters.network.http_connection_manager"
# "[2026-01-01 10:00:00.000][123][warning][config] [source/...cc:81] the message"
_LOG_PREFIX = re.compile(r"^(?:\[[^\]]*\]){4} \[[^\]]*\] ")
_REJECTION_LOG = re.compile(r"rejected|update failure|update_failure", re.IGNORECASE)
_MAX_REASON = 600


class AdminUnavailable(IstiolabError):
    """The admin API did not answer (the proxy is not running, or not yet)."""


class ConfigNotApplied(IstiolabError):
    """A proxy has not applied a configuration version: it rejected it, or it did not get there
    in time. Either way it still serves what it had before."""

    def __init__(
        self,
        message: str,
        *,
        proxy: str,
        version: str,
        applied: AppliedVersions | None,
        rejected: Mapping[str, int],
        reason: str,
        fix: str,
    ) -> None:
        super().__init__(message, fix=fix)
        self.proxy = proxy
        self.version = version
        self.applied = applied
        self.rejected = dict(rejected)
        self.reason = reason


@dataclass(frozen=True)
class AppliedVersions:
    """The configuration version a proxy runs, per kind of resource ("" before the first)."""

    listeners: str
    clusters: str
    routes: Mapping[str, str] = field(default_factory=dict)  # route config name -> version

    def all_at(self, version: str) -> bool:
        return (
            self.listeners == version
            and self.clusters == version
            and all(applied == version for applied in self.routes.values())
        )

    def describe(self) -> str:
        routes = ", ".join(f"RDS {name}={v or '-'}" for name, v in sorted(self.routes.items()))
        parts = [f"LDS={self.listeners or '-'}", f"CDS={self.clusters or '-'}"]
        return ", ".join([*parts, routes] if routes else parts)


@dataclass(frozen=True)
class ConfigState:
    """Where a proxy's rejection counters and log stood, taken before writing new files."""

    rejections: Mapping[str, int]
    log_offset: int


class EnvoyAdmin:
    """The admin API of one proxy, named `proxy` in messages (e.g. "reviews-v2-x2k4p.default")."""

    def __init__(
        self,
        port: int,
        *,
        proxy: str = "",
        log_path: str | os.PathLike[str] | None = None,
        timeout: float = 2.0,
    ) -> None:
        self.port = port
        self.proxy = proxy or f"the Envoy with admin port {port}"
        self.log_path = Path(log_path) if log_path is not None else None
        self.timeout = timeout

    # --- raw access -------------------------------------------------------------------------

    def get(self, path: str) -> str:
        """GET an admin path (e.g. "/ready") and return the body; AdminUnavailable if no answer."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read().decode("utf-8", "replace")
        except OSError as error:
            raise AdminUnavailable(
                f"{self.proxy}: no answer from its Envoy admin API on 127.0.0.1:{self.port} "
                f"({error})",
                fix="check that the proxy is running (istiolab status)",
            ) from error
        finally:
            connection.close()
        if response.status != 200:
            raise AdminUnavailable(
                f"{self.proxy}: GET {path} on its admin API answered {response.status}: "
                f"{body.strip()[:200]}"
            )
        return body

    def get_json(self, path: str) -> Any:
        return json.loads(self.get(path))

    def ready(self) -> bool:
        """True once Envoy has started serving (admin `/ready` says LIVE)."""
        try:
            return self.get("/ready").strip() == "LIVE"
        except AdminUnavailable:
            return False

    # --- what istioctl proxy-config shows ----------------------------------------------------

    def config_dump(self, resource: str | None = None) -> dict[str, Any]:
        """`/config_dump`, or one part of it (`dynamic_listeners`, `dynamic_active_clusters`,
        `dynamic_route_configs`, `bootstrap`, ...)."""
        path = "/config_dump" if resource is None else f"/config_dump?resource={quote(resource)}"
        return self.get_json(path)

    def clusters_json(self) -> dict[str, Any]:
        """`/clusters?format=json`: every cluster's endpoints, health flags and counters."""
        return self.get_json("/clusters?format=json")

    def certs(self) -> dict[str, Any]:
        """`/certs`: the certificates each TLS context has loaded (what `proxy-config secret`
        shows). Envoy 1.40 answers `{"certificates": [{"ca_cert": [...], "cert_chain": [...]}]}`,
        one item per listener filter chain or cluster that uses TLS, each certificate with its
        `serial_number` (hex), `subject_alt_names` (`[{"uri": "spiffe://..."}]`), `valid_from`
        and `expiration_time`; `{"certificates": []}` when nothing uses TLS."""
        return self.get_json("/certs")

    def stats(self, filter: str | None = None) -> dict[str, int | str]:
        """Counters, gauges and text readouts by name (histograms are left out).

        `filter` is a regular expression Envoy matches against each name.
        """
        path = "/stats?format=json"
        if filter:
            path += f"&filter={quote(filter)}"
        stats: dict[str, int | str] = {}
        for entry in self.get_json(path).get("stats", []):
            if "name" in entry and "value" in entry:
                stats[entry["name"]] = entry["value"]
        return stats

    # --- configuration versions: ACK and NACK -----------------------------------------------

    def applied_versions(self) -> AppliedVersions:
        """The version of the LDS, CDS and RDS files this proxy runs.

        The route configurations counted are the ones its current listeners use; a route
        configuration a replaced listener still drains with is not.
        """
        stats = self.stats(_VERSION_STATS)
        listeners = self.config_dump("dynamic_listeners")
        return self._applied(stats, _route_config_names(listeners))

    def rejection_counts(self) -> dict[str, int]:
        """Every LDS/CDS/RDS `update_rejected` and `update_failure` counter, by stat name."""
        return {
            name: int(value)
            for name, value in self.stats(_REJECTION_STATS).items()
            if isinstance(value, int)
        }

    def draining(self) -> int:
        """Listeners and filter chains still serving connections opened before an update."""
        gauges = self.stats(_DRAINING_STATS)
        return sum(int(value) for value in gauges.values() if isinstance(value, int))

    def wait_until_drained(self, timeout: float) -> None:
        """Return once no connection is served by a listener or filter chain an update replaced
        (a connection kept open by a client would otherwise still see the old rules), or after
        `timeout`: Envoy closes what is left at the end of its drain time anyway."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.draining() == 0:
                    return
            except AdminUnavailable:
                return  # restarting: it has no old connections left either
            time.sleep(0.05)  # poll interval while old connections close

    def snapshot(self) -> ConfigState:
        """Take this before writing new files; pass it to wait_for_version as `since`."""
        return ConfigState(self.rejection_counts(), self._log_size())

    def wait_for_version(
        self,
        version: str,
        timeout: float = 10.0,
        *,
        since: ConfigState | None = None,
    ) -> AppliedVersions:
        """Return once every listener, cluster and route configuration is at `version`.

        Raises ConfigNotApplied when the deadline passes, or at once when `since` is given and a
        rejection counter has gone up since (the proxy refused the new files); the message says
        which proxy, what it runs instead, and Envoy's reason when it can be found.
        """
        version = str(version)
        deadline = time.monotonic() + timeout
        applied: AppliedVersions | None = None
        unavailable: AdminUnavailable | None = None
        while True:
            try:
                applied = self.applied_versions()
                if applied.all_at(version):
                    return applied
                if since is not None:
                    rejected = _increases(since.rejections, self.rejection_counts())
                    if rejected:
                        raise self._not_applied(version, applied, rejected, since)
                unavailable = None
            except AdminUnavailable as error:
                unavailable = error
            if time.monotonic() >= deadline:
                if unavailable is not None:
                    raise unavailable
                rejected = {}
                if since is not None:
                    rejected = _increases(since.rejections, self.rejection_counts())
                raise self._not_applied(version, applied, rejected, since, timeout=timeout)
            time.sleep(POLL_INTERVAL)

    # --- helpers -----------------------------------------------------------------------------

    def _applied(self, stats: Mapping[str, int | str], routes: Iterable[str]) -> AppliedVersions:
        route_versions = {}
        for name in routes:
            found = [
                str(value)
                for stat, value in stats.items()
                if stat.endswith(
                    (f".rds.{name}.version_text", f".rds.{_stat_safe(name)}.version_text")
                )
            ]
            # Several connection managers can share one route configuration: all must agree.
            route_versions[name] = found[0] if found and len(set(found)) == 1 else ""
        return AppliedVersions(
            listeners=str(stats.get("listener_manager.lds.version_text", "")),
            clusters=str(stats.get("cluster_manager.cds.version_text", "")),
            routes=route_versions,
        )

    def _not_applied(
        self,
        version: str,
        applied: AppliedVersions | None,
        rejected: Mapping[str, int],
        since: ConfigState | None,
        *,
        timeout: float = 0.0,
    ) -> ConfigNotApplied:
        running = applied.describe() if applied else "unknown"
        # Without a snapshot, a rejection in the log is the likeliest reason, if not a sure one.
        reason = ""
        if rejected or since is None:
            reason = self._rejection_reason(since, wait=LOG_WAIT if rejected else 0.0)
        if rejected:
            kinds = sorted({_kind(stat) for stat in rejected})
            message = (
                f"{self.proxy} rejected configuration version {version} ({', '.join(kinds)}) "
                f"and keeps serving what it had ({running})"
            )
        else:
            message = (
                f"{self.proxy} did not apply configuration version {version} within "
                f"{timeout:g} s (it runs {running})"
            )
        if reason:
            message += f": {reason}"
        where = f" (its log: {self.log_path})" if self.log_path else ""
        return ConfigNotApplied(
            message,
            proxy=self.proxy,
            version=version,
            applied=applied,
            rejected=rejected,
            reason=reason,
            fix=f"read the proxy's log{where}; the previous configuration is still in effect",
        )

    def _rejection_reason(self, since: ConfigState | None, *, wait: float = 0.0) -> str:
        """Envoy's own words: the last rejection in its log, else a listener's error_state.

        Envoy writes its log file every FILE_FLUSH_INTERVAL_MS, so a rejection just counted may
        reach the log a moment later: `wait` is how long to look for it.
        """
        if self.log_path is not None:
            deadline = time.monotonic() + wait
            while True:
                lines = _log_lines(self.log_path, since.log_offset if since else 0)
                reasons = [
                    _LOG_PREFIX.sub("", line) for line in lines if _REJECTION_LOG.search(line)
                ]
                if reasons:
                    return _shorten(reasons[-1])
                if time.monotonic() >= deadline:
                    break
                time.sleep(POLL_INTERVAL)
        try:
            listeners = self.config_dump("dynamic_listeners")
        except AdminUnavailable:
            return ""
        for listener in listeners.get("configs", []):
            details = listener.get("error_state", {}).get("details")
            if details:
                return _shorten(f"listener {listener.get('name', '?')!r}: {details}")
        return ""

    def _log_size(self) -> int:
        try:
            return self.log_path.stat().st_size if self.log_path else 0
        except OSError:
            return 0


def _route_config_names(listener_dump: Mapping[str, Any]) -> set[str]:
    """The RDS route configuration names the proxy's active listeners use."""
    names: set[str] = set()
    for entry in listener_dump.get("configs", []):
        listener = entry.get("active_state", {}).get("listener", {})
        chains = [*listener.get("filter_chains", [])]
        if "default_filter_chain" in listener:
            chains.append(listener["default_filter_chain"])
        for chain in chains:
            for network_filter in chain.get("filters", []):
                rds = network_filter.get("typed_config", {}).get("rds")
                if network_filter.get("name") == _HCM and rds:
                    names.add(rds["route_config_name"])
    return names


def _stat_safe(name: str) -> str:
    return name.replace(":", "_")


def _increases(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    return {name: n - before.get(name, 0) for name, n in after.items() if n > before.get(name, 0)}


def _kind(stat: str) -> str:
    if stat.startswith("listener_manager.lds."):
        return "listeners"
    if stat.startswith("cluster_manager.cds."):
        return "clusters"
    return "routes"


def _log_lines(path: Path, offset: int) -> list[str]:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."
