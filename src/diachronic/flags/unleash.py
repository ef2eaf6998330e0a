"""Unleash as the flag store: writes and the admin view over the Admin API (httpx), routing with ``UnleashClient``.

Same rules as ``LocalFlagStore`` (the contract suite ``tests/flag_contract.py`` runs against both); what is
particular to Unleash:

- Listing. ``/api/admin/search/features`` finds the workflow's flags by name (active and, when asked, archived;
  pages of 100), then each flag's strategies come from ``.../environments/<env>/strategies``, which also answers
  for archived flags. The search matches ``ILIKE %query%``, so names are re-checked for the exact prefix here.
  Names that start like a version flag but do not parse are logged once and skipped.
- Creating. ``apply_version_flag`` needs several calls (create, two strategies, enable). While they run, the
  flag's description carries ``SETUP_MARK``; a retried call that finds its own flag still marked finishes the
  set-up instead of returning a half-made flag, while a finished flag whose strategies a human deleted is
  left alone (a human edit). An archived name is revived rather than re-created (Unleash keeps archived
  names reserved); a name created meanwhile by someone else is a retryable error (the retried call sees it,
  and returns it or takes the next sequence id); a name held by another project is not retryable. Unleash has
  no transactions: two deploys of *different* versions of one workflow at the same moment could take the same
  sequence id, so callers serialize them per workflow (the CI does: one CI workflow per workflow, a FIFO queue).
- Routing. The official ``UnleashClient`` (polling every ``refresh_s``, no metrics, no registration, an
  in-memory cache so that a stale file never decides) evaluates; the client token decides the environment.
  Before the client's first successful fetch ``route`` raises a retryable ``FlagStoreError`` rather than
  answer "no version"; when Unleash goes away later, routing carries on from the last state fetched (the
  Unleash SDKs' own rule). Changes reach routing within ``refresh_s`` plus the server's own revision tick (1 s).
- Compare-and-set. ``set_general_percent(expected=...)`` reads the flag (to find the strategy's id), then sends
  ``PATCH .../strategies/<id>`` whose JSON Patch ``test`` operations (name, title, ``disabled`` false, rollout
  = expected) come before the ``replace``: Unleash applies the patch to the strategy as it holds it and writes
  nothing if a test fails (HTTP 500, ``TEST_OPERATION_FAILED`` in the body), so an edit landing between our
  read and our write is never overwritten. Unleash checks the tests on the strategy it reads and writes in a
  separate transaction a few milliseconds later; an edit landing inside that server-side window is the one
  case it cannot see. Unleash also lets a strategy of an archived flag be patched: a flag archived in the
  instant between our read and our PATCH gets the new rollout (it routes nothing while archived).
- Errors. Every HTTP exchange goes through ``_call``: connection errors, timeouts, 408/429/5xx become retryable
  ``FlagStoreError``; a failed ``test`` operation is ``ConcurrentEdit``; other 4xx are not retryable, nor is a
  server certificate that no trusted CA signed (set ``ca_bundle``, ``DIACHRONIC_UNLEASH_CA_BUNDLE``, for an
  Unleash behind a private CA: both the Admin API client and ``UnleashClient`` verify with it); a missing flag
  is ``NotFound``. Token values are never put into a message, a log record or a repr (``_scrub`` removes them
  from anything the server echoes back).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shlex
import ssl
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr, ValidationError
from UnleashClient.cache import BaseCache
from UnleashClient.clients.unleash_client import UnleashClient
from UnleashClient.constants import ETAG, FEATURES_URL
from UnleashClient.utils import InstanceAllowType

from diachronic import versions
from diachronic.contracts import VersionInfo
from diachronic.errors import (
    ConcurrentEdit,
    ConfigError,
    FlagStoreError,
    InvalidInput,
    NotFound,
    http_client_error_retryable,
    http_status_retryable,
    retry_after_s,
    untrusted_certificate,
)
from diachronic.flags import GENERAL_TRAFFIC_TITLE, Constraint, FlagStrategy, VersionFlag
from diachronic.flags.evaluation import (
    check_expected_percent,
    context_properties,
    default_strategies,
    general_strategy,
    new_rollout,
    validate_percent,
)
from diachronic.settings import Settings

__all__ = ["DESCRIPTION", "SETUP_MARK", "UnleashFlagStore", "base_url", "local_state", "read_state_file"]

log = logging.getLogger(__name__)

# UnleashClient logs "Getting feature flags." at INFO on every poll (every second): keep its warnings only,
# unless the application configured that logger itself.
_client_log = logging.getLogger("UnleashClient")
if _client_log.level == logging.NOTSET:
    _client_log.setLevel(logging.WARNING)

DESCRIPTION = "Determines whether users get this version of workflow."
"""The description the original gave every version flag; kept so both tools describe flags alike."""
SETUP_MARK = " [diachronic: being set up]"
"""Appended to the description while ``apply_version_flag`` is still adding strategies (see the module doc)."""

DEFAULT_TIMEOUT_S = 10.0
SEARCH_PAGE = 100  # the search endpoint's maximum page size
FETCH_CONCURRENCY = 8
HTTPX_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.CookieConflict, httpx.StreamError)
"""Every exception httpx raises (the roots of its tree): all translated in ``_call``."""
TEST_OPERATION_FAILED = "TEST_OPERATION_FAILED"
"""How Unleash (7.5.1) words a failed JSON Patch ``test``, in an HTTP 500's body: a concurrent edit, not a fault."""


def _secret(value: SecretStr | str | None) -> SecretStr | None:
    if value is None or isinstance(value, SecretStr):
        return value
    return SecretStr(value)


def base_url(url: str) -> str:
    """The server's base URL: accepts ``http://host:4242``, with or without a trailing ``/`` or ``/api``."""
    url = url.strip().rstrip("/")
    return url[: -len("/api")] if url.endswith("/api") else url


_EXPORT = re.compile(r"^export (DIACHRONIC_UNLEASH_[A-Z_]+)=(.*)$")


def read_state_file(path: Path) -> dict[str, str]:
    """The ``export DIACHRONIC_UNLEASH_NAME=value`` lines of ``scripts/unleash/unleash.sh``'s state file."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = _EXPORT.match(line.strip())
        if match:
            raw = match.group(2)
            values[match.group(1)] = shlex.split(raw)[0] if raw.strip() else ""
    return values


def local_state(data_dir: Path) -> dict[str, Any] | None:
    """Settings fields of the local Unleash started for ``data_dir`` (``<data_dir>/unleash/state.env``), if any."""
    path = data_dir / "unleash" / "state.env"
    if not path.is_file():
        return None
    values = read_state_file(path)
    if not values.get("DIACHRONIC_UNLEASH_ADMIN_TOKEN"):
        return None
    fields: dict[str, Any] = {
        "unleash_url": values.get("DIACHRONIC_UNLEASH_URL"),
        "unleash_admin_token": SecretStr(values["DIACHRONIC_UNLEASH_ADMIN_TOKEN"]),
        "unleash_client_token": SecretStr(client)
        if (client := values.get("DIACHRONIC_UNLEASH_CLIENT_TOKEN"))
        else None,
        "unleash_project": values.get("DIACHRONIC_UNLEASH_PROJECT"),
        "unleash_environment": values.get("DIACHRONIC_UNLEASH_ENVIRONMENT"),
    }
    return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True)
class _Entry:
    """One version flag as the search endpoint lists it (no strategies yet)."""

    info: VersionInfo
    enabled: bool
    archived: bool
    description: str


class _RoutingCache(BaseCache):
    """``UnleashClient``'s cache, in memory, that also indexes each fetched payload by workflow.

    The client hands every successful fetch to ``set(FEATURES_URL, raw)`` before the engine takes it; the
    index (workflow -> its version flags, newest first) is rebuilt from that same payload, so routing only
    asks the engine about names it serves. A file cache would let a process start routing on stale state.
    """

    def __init__(self, warn_once: _WarnOnce) -> None:
        self._data: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._warn = warn_once
        self.bootstrapped = False
        self.index: Mapping[str, Sequence[VersionInfo]] = {}
        self.payload: Mapping[str, Mapping[str, Any]] = {}
        self.loaded = threading.Event()
        self.polls = 0  # polls begun; each begins by reading the etag, after the engine took the last payload

    def set(self, key: str, value: Any) -> None:
        if key == FEATURES_URL:
            self._load(value)
        with self._lock:
            self._data[key] = value

    def mset(self, data: dict[str, Any]) -> None:
        with self._lock:
            self._data.update(data)

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            if key == ETAG:
                self.polls += 1
            return self._data.get(key, default)

    def exists(self, key: str) -> bool:
        with self._lock:
            return key in self._data

    def destroy(self) -> None:
        with self._lock:
            self._data.clear()

    def _load(self, raw: Any) -> None:
        try:
            features = json.loads(raw)["features"]
            by_name = {str(f["name"]): f for f in features if isinstance(f, dict) and "name" in f}
        except (TypeError, ValueError, KeyError) as exc:
            log.warning("unleash: ignoring a client payload that does not parse: %s", type(exc).__name__)
            return
        grouped: dict[str, list[VersionInfo]] = {}
        for name in by_name:
            if not name.startswith(f"{versions.FLAG_PREFIX}."):
                continue
            try:
                workflow_name, seq_id, version_id = versions.parse_flag_name(name)
            except InvalidInput as exc:
                self._warn(name, str(exc))
                continue
            grouped.setdefault(workflow_name, []).append(versions.version_info(workflow_name, seq_id, version_id))
        self.index = {wf: versions.sort_newest_first(infos) for wf, infos in grouped.items()}
        self.payload = by_name
        self.loaded.set()


class _WarnOnce:
    """Log a malformed look-alike flag once per name and process, not on every listing or refresh."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, name: str, why: str) -> None:
        with self._lock:
            if name in self._seen:
                return
            self._seen.add(name)
        log.warning("skipping flag %r: it looks like a version flag but does not parse: %s", name, why)


def _constraint(raw: Mapping[str, Any]) -> Constraint:
    values = raw.get("values")
    if not values and raw.get("value") is not None:
        values = [raw["value"]]
    return Constraint(
        context_name=str(raw["contextName"]),
        operator=str(raw["operator"]),
        values=[str(v) for v in values or []],
        case_insensitive=bool(raw.get("caseInsensitive", False)),
        inverted=bool(raw.get("inverted", False)),
    )


def _strategy(raw: Mapping[str, Any]) -> FlagStrategy:
    """A strategy as Unleash's admin API returns it (variants, segments, sortOrder... are not ours)."""
    return FlagStrategy(
        id=str(raw.get("id") or ""),
        name=str(raw["name"]),
        title=raw.get("title") or None,
        disabled=bool(raw.get("disabled") or False),
        constraints=[_constraint(c) for c in raw.get("constraints") or []],
        parameters={str(k): str(v) for k, v in (raw.get("parameters") or {}).items()},
    )


def _parsed_strategies(flag_name: str, raw: Any) -> list[FlagStrategy]:
    """A flag's strategies in Unleash's order (``sortOrder``); a non-retryable error if they do not parse."""
    try:
        if not isinstance(raw, list):
            raise ValueError("strategies must be a list")
        ordered = sorted(enumerate(raw), key=lambda item: (item[1].get("sortOrder") or 0, item[0]))
        return [_strategy(s) for _, s in ordered]
    except (ValidationError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FlagStoreError(
            f"unleash: flag {flag_name!r} has strategies diachronic cannot read: {type(exc).__name__}",
            retryable=False,
        ) from None


def _wire(strategy: FlagStrategy) -> dict[str, Any]:
    """The body Unleash takes to create or replace a strategy."""
    return {
        "name": strategy.name,
        "title": strategy.title,
        "disabled": strategy.disabled,
        "constraints": [c.model_dump(mode="json", by_alias=True) for c in strategy.constraints],
        "parameters": dict(strategy.parameters),
        "variants": [],
        "segments": [],
    }


def _routing_shape(strategies: Iterable[FlagStrategy]) -> list[str]:
    """What routing depends on in a flag's active strategies, comparable between the admin and client views."""
    return sorted(
        json.dumps(
            [
                s.name,
                sorted(s.parameters.items()),
                [[c.context_name, c.operator, c.values, c.inverted] for c in s.constraints],
            ]
        )
        for s in strategies
        if not s.disabled
    )


class UnleashFlagStore:
    """``FlagStore`` on an Unleash server; see the module docstring for what is particular to Unleash."""

    def __init__(
        self,
        url: str,
        admin_token: SecretStr | str,
        client_token: SecretStr | str | None = None,
        *,
        project: str = "default",
        environment: str = "development",
        refresh_s: float = 1.0,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        app_name: str = "diachronic",
        transport: httpx.AsyncBaseTransport | None = None,
        ca_bundle: Path | None = None,
    ) -> None:
        admin = _secret(admin_token)
        if admin is None or not admin.get_secret_value():
            raise ConfigError("the Unleash flag store needs an admin token (DIACHRONIC_UNLEASH_ADMIN_TOKEN)")
        if refresh_s <= 0 or timeout_s <= 0:
            raise ConfigError("refresh_s and timeout_s must be positive")
        self.url = base_url(url)
        self.project = project
        self.environment = environment
        self.refresh_s = refresh_s
        self.timeout_s = timeout_s
        self.app_name = app_name
        self._admin_token = admin
        self._client_token = _secret(client_token)
        self.ca_bundle = ca_bundle
        verify: ssl.SSLContext | bool = True
        if ca_bundle is not None:
            try:
                verify = ssl.create_default_context(cafile=str(ca_bundle))
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"cannot load the Unleash CA bundle {ca_bundle}: {exc}") from None
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": admin.get_secret_value(), "Accept": "application/json"},
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            verify=verify,
        )
        self._warn = _WarnOnce()
        self._cache = _RoutingCache(self._warn)
        self._client: UnleashClient | None = None
        self._client_lock = asyncio.Lock()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> UnleashFlagStore:
        """The store ``DIACHRONIC_UNLEASH_*`` describes (``DIACHRONIC_FLAGS=unleash``).

        Without an admin token in the settings, the local Unleash that ``make unleash`` started for this data
        folder is used (its state file), so ``diachronic dev --flags unleash`` works without exporting anything.
        """
        if settings.unleash_admin_token is None:
            state = local_state(settings.data_dir)
            if state is None:
                raise ConfigError(
                    "DIACHRONIC_FLAGS=unleash needs DIACHRONIC_UNLEASH_ADMIN_TOKEN (an admin API token), "
                    "or a local Unleash started with `make unleash`"
                )
            settings = settings.model_copy(update=state)
        admin = settings.unleash_admin_token
        assert admin is not None
        return cls(
            settings.unleash_url,
            admin,
            settings.unleash_client_token,
            project=settings.unleash_project,
            environment=settings.unleash_environment,
            refresh_s=settings.unleash_refresh_s,
            ca_bundle=settings.unleash_ca_bundle,
        )

    def __repr__(self) -> str:
        return (
            f"UnleashFlagStore(url={self.url!r}, project={self.project!r}, environment={self.environment!r}, "
            f"refresh_s={self.refresh_s!r})"
        )

    # -- HTTP: the one place where httpx and Unleash errors are translated ----------------------------------

    def _scrub(self, text: str) -> str:
        """``text`` without any token, whole or its secret part (the server may echo what it was sent)."""
        for token in (self._admin_token, self._client_token):
            if token is None:
                continue
            value = token.get_secret_value()
            for part in {value, value.rpartition(".")[2]}:
                if len(part) >= 6:
                    text = text.replace(part, "***")
        return text

    def _server_message(self, response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            body = None
        message = ""
        if isinstance(body, dict):
            details = body.get("details")
            if isinstance(details, list) and details and isinstance(details[0], dict):
                message = str(details[0].get("message") or "")
            message = message or str(body.get("message") or body.get("error") or "")
        if not message:
            message = response.text.strip()
        message = " ".join(message.split())
        return self._scrub(message[:300] + ("..." if len(message) > 300 else ""))

    async def _call(
        self,
        action: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str | int] | None = None,
        ok: Collection[int] = (200,),
        missing: str | None = None,
        client_token: bool = False,
    ) -> httpx.Response:
        """One Admin API request (``client_token``: a Client API request, with the client token); raises
        ``FlagStoreError`` (or ``NotFound`` for a 404 when ``missing`` is given)."""
        if self._closed:
            raise FlagStoreError(f"unleash: cannot {action}: the flag store is closed", retryable=False)
        token, variable = (self._client_token, "CLIENT") if client_token else (self._admin_token, "ADMIN")
        headers = {"Authorization": token.get_secret_value()} if token is not None else {}
        try:
            response = await self._http.request(method, path, json=body, params=params, headers=headers)
        except HTTPX_ERRORS as exc:
            if isinstance(exc, httpx.TimeoutException):
                problem = f"{self.url} did not answer within {self.timeout_s:g}s ({type(exc).__name__})"
            elif untrusted_certificate(exc):
                problem = (
                    f"the certificate of {self.url} is not signed by a trusted CA: set DIACHRONIC_UNLEASH_CA_BUNDLE "
                    "to the CA (PEM) that signed it"
                )
            else:
                problem = f"cannot reach {self.url} ({type(exc).__name__}: {self._scrub(str(exc))})"
            raise FlagStoreError(
                f"unleash: {action} failed: {problem}", retryable=http_client_error_retryable(exc)
            ) from None  # the request (its headers: the token) stays out of the traceback
        status = response.status_code
        if status in ok:
            return response
        if status == 404 and missing is not None:
            raise NotFound(missing)
        message = self._server_message(response)
        if status == 401:
            raise FlagStoreError(
                f"unleash: {action} failed: {self.url} rejected the {variable.lower()} token (HTTP 401): "
                f"check DIACHRONIC_UNLEASH_{variable}_TOKEN",
                retryable=False,
            )
        if status == 403:
            raise FlagStoreError(
                f"unleash: {action} failed: the admin token may not do this (HTTP 403) in project "
                f"{self.project!r}: {message}",
                retryable=False,
            )
        if status == 500 and TEST_OPERATION_FAILED in response.text:
            raise ConcurrentEdit(f"unleash: {action} refused: the strategy changed since it was read")
        retryable = http_status_retryable(status)
        raise FlagStoreError(
            f"unleash: {action} failed: HTTP {status}: {message}",
            retryable=retryable,
            retry_after_s=retry_after_s(response.headers.get("Retry-After")) if retryable else None,
        )

    def _json(self, action: str, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise FlagStoreError(
                f"unleash: {action} failed: the answer is not JSON (HTTP {response.status_code})", retryable=True
            ) from None

    def _feature_path(self, name: str) -> str:
        return f"/api/admin/projects/{self.project}/features/{name}"

    def _strategies_path(self, name: str) -> str:
        return f"{self._feature_path(name)}/environments/{self.environment}/strategies"

    # -- reading --------------------------------------------------------------------------------------------

    async def _search(self, prefix: str, *, archived: bool) -> list[dict[str, Any]]:
        """Every feature (active or archived) whose name starts with ``prefix`` exactly."""
        found: list[dict[str, Any]] = []
        offset = 0
        action = f"search {'archived ' if archived else ''}flags {prefix}*"
        while True:
            params: dict[str, str | int] = {
                "query": prefix,
                "project": f"IS:{self.project}",
                "archived": f"IS:{'true' if archived else 'false'}",
                "limit": SEARCH_PAGE,
                "offset": offset,
                "sortBy": "createdAt",
                "sortOrder": "asc",
            }
            data = self._json(action, await self._call(action, "GET", "/api/admin/search/features", params=params))
            page = data.get("features") if isinstance(data, dict) else None
            if not isinstance(page, list):
                raise FlagStoreError(f"unleash: {action} failed: unexpected answer", retryable=False)
            found.extend(f for f in page if isinstance(f, dict) and str(f.get("name", "")).startswith(prefix))
            offset += len(page)
            total = data.get("total")
            if not page or not isinstance(total, int) or offset >= total:
                return found

    def _entry(self, feature: Mapping[str, Any], *, archived: bool) -> _Entry | None:
        name = str(feature["name"])
        try:
            workflow_name, seq_id, version_id = versions.parse_flag_name(name)
        except InvalidInput as exc:
            self._warn(name, str(exc))
            return None
        environments = feature.get("environments") or []
        enabled = any(
            isinstance(e, dict) and e.get("name") == self.environment and bool(e.get("enabled")) for e in environments
        )
        return _Entry(
            info=versions.version_info(workflow_name, seq_id, version_id),
            enabled=enabled,
            archived=archived,
            description=str(feature.get("description") or ""),
        )

    async def _entries(self, workflow_name: str, *, include_archived: bool) -> list[_Entry]:
        """The workflow's version flags without strategies, newest first (one or two search requests)."""
        prefix = versions.flag_name_prefix(workflow_name)
        searches = [self._search(prefix, archived=False)]
        if include_archived:
            searches.append(self._search(prefix, archived=True))
        results = await asyncio.gather(*searches)
        entries: dict[str, _Entry] = {}
        for archived, features in zip((False, True), results, strict=False):
            for feature in features:
                entry = self._entry(feature, archived=archived)
                if entry is not None and entry.info.flag_name not in entries:
                    entries[entry.info.flag_name] = entry
        return sorted(entries.values(), key=lambda e: (e.info.seq_id, e.info.flag_name), reverse=True)

    async def _raw_strategies(self, name: str) -> list[FlagStrategy]:
        action = f"read the strategies of {name}"
        response = await self._call(action, "GET", self._strategies_path(name), missing=f"flag {name!r} does not exist")
        data = self._json(action, response)
        if isinstance(data, dict):  # some versions wrap the list
            data = data.get("strategies")
        return _parsed_strategies(name, data)

    async def list_version_flags(self, workflow_name: str, *, include_archived: bool = False) -> list[VersionFlag]:
        """The workflow's version flags, newest first (seq as numbers); malformed names skipped and logged."""
        entries = await self._entries(workflow_name, include_archived=include_archived)
        limit = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def complete(entry: _Entry) -> VersionFlag | None:
            async with limit:
                try:
                    strategies = await self._raw_strategies(entry.info.flag_name)
                except NotFound:  # deleted between the search and now
                    return None
                except FlagStoreError as exc:
                    if exc.retryable:
                        raise
                    self._warn(entry.info.flag_name, exc.message)
                    return None
            return VersionFlag(info=entry.info, enabled=entry.enabled, archived=entry.archived, strategies=strategies)

        flags = await asyncio.gather(*(complete(e) for e in entries))
        return versions.sort_newest_first([f for f in flags if f is not None])

    async def get_strategies(self, flag_name: str) -> list[FlagStrategy]:
        """All strategies of the flag in the environment, disabled ones too; ``NotFound`` if no such flag."""
        return await self._raw_strategies(flag_name)

    async def _live_strategies(self, name: str) -> list[FlagStrategy]:
        """The strategies of a non-archived flag; ``NotFound`` if it does not exist or is archived."""
        action = f"read flag {name}"
        response = await self._call(
            action, "GET", self._feature_path(name), missing=f"flag {name!r} does not exist or is archived"
        )
        feature = self._json(action, response)
        if not isinstance(feature, dict):
            raise FlagStoreError(f"unleash: {action} failed: unexpected answer", retryable=False)
        return _parsed_strategies(name, self._environment_of(feature).get("strategies"))

    def _environment_of(self, feature: Mapping[str, Any]) -> Mapping[str, Any]:
        for env in feature.get("environments") or []:
            if isinstance(env, dict) and env.get("name") == self.environment:
                return env
        raise FlagStoreError(
            f"unleash: flag {feature.get('name')!r} has no environment {self.environment!r} "
            f"(is it enabled for project {self.project!r}?)",
            retryable=False,
        )

    # -- writing --------------------------------------------------------------------------------------------

    async def set_general_percent(self, flag_name: str, percent: int, *, expected: int | None = None) -> None:
        """Set ``All other traffic`` to ``percent``; with ``expected``, a compare-and-set Unleash enforces.

        Only the ``rollout`` parameter is patched, so a concurrent human edit of anything else survives. Without
        ``expected`` a deleted strategy is re-created and its disabled state is left to the human who set it.
        """
        validate_percent(percent)
        if expected is not None:
            validate_percent(expected)
        strategies = await self._live_strategies(flag_name)
        action = f"set {GENERAL_TRAFFIC_TITLE!r} of {flag_name} to {percent}%"
        if expected is not None:
            await self._compare_and_set(action, flag_name, strategies, percent, expected)
            return
        general = general_strategy(strategies)
        if general is None:
            strategy = new_rollout(flag_name, GENERAL_TRAFFIC_TITLE, percent)
            await self._call(action, "POST", self._strategies_path(flag_name), body=_wire(strategy))
        elif general.parameters.get("rollout") != str(percent):
            op = "replace" if "rollout" in general.parameters else "add"
            patch = [{"op": op, "path": "/parameters/rollout", "value": str(percent)}]
            await self._call(action, "PATCH", f"{self._strategies_path(flag_name)}/{general.id}", body=patch)

    async def _compare_and_set(
        self, action: str, flag_name: str, strategies: list[FlagStrategy], percent: int, expected: int
    ) -> None:
        """PATCH the strategy with JSON Patch ``test`` operations before the ``replace``: Unleash applies the
        patch to the strategy as it holds it and writes nothing when a test fails. A refusal (or the strategy
        gone, 404) is explained by reading the flag again: ``NotFound`` or ``ConcurrentEdit`` with ``found``."""
        general = check_expected_percent(flag_name, strategies, expected)
        if percent == expected:
            return
        patch = [
            {"op": "test", "path": "/name", "value": general.name},
            {"op": "test", "path": "/title", "value": GENERAL_TRAFFIC_TITLE},
            {"op": "test", "path": "/disabled", "value": False},
            {"op": "test", "path": "/parameters/rollout", "value": str(expected)},
            {"op": "replace", "path": "/parameters/rollout", "value": str(percent)},
        ]
        path = f"{self._strategies_path(flag_name)}/{general.id}"
        try:
            await self._call(action, "PATCH", path, body=patch, missing=f"{GENERAL_TRAFFIC_TITLE!r} of {flag_name}")
        except (ConcurrentEdit, NotFound):
            check_expected_percent(flag_name, await self._live_strategies(flag_name), expected)
            raise ConcurrentEdit(  # changed and changed back, or deleted and re-created: still not what was read
                f"{GENERAL_TRAFFIC_TITLE!r} of {flag_name} changed while it was being written", found=expected
            ) from None

    async def archive_flag(self, flag_name: str) -> None:
        """Archive the flag; a no-op if it is archived already; ``NotFound`` if it does not exist."""
        response = await self._call(
            f"archive {flag_name}", "DELETE", self._feature_path(flag_name), ok=(200, 202, 204, 404)
        )
        if response.status_code == 404:
            await self._raw_strategies(flag_name)  # answers for archived flags; NotFound for unknown ones

    async def revive_flag(self, flag_name: str) -> None:
        """Bring an archived flag back (Unleash revives it switched off in every environment)."""
        path = f"/api/admin/archive/revive/{flag_name}"
        await self._call(f"revive {flag_name}", "POST", path, missing=f"flag {flag_name!r} is not archived")

    async def set_flag_enabled(self, flag_name: str, enabled: bool) -> None:
        """Turn the flag on or off in the environment."""
        switch = "on" if enabled else "off"
        path = f"{self._feature_path(flag_name)}/environments/{self.environment}/{switch}"
        missing = f"flag {flag_name!r} does not exist or is archived"
        await self._call(f"switch {flag_name} {switch}", "POST", path, missing=missing)

    async def _set_description(self, name: str, description: str) -> None:
        patch = [{"op": "replace", "path": "/description", "value": description}]
        await self._call(f"describe {name}", "PATCH", self._feature_path(name), body=patch)

    async def _create(self, name: str) -> bool:
        """Create the flag, marked as being set up; False if the name is taken (archived or not)."""
        body = {
            "name": name,
            "type": "release",
            "description": DESCRIPTION + SETUP_MARK,
            "impressionData": True,
        }
        response = await self._call(
            f"create flag {name}", "POST", f"/api/admin/projects/{self.project}/features", body=body, ok=(200, 201, 409)
        )
        return response.status_code != 409

    async def _set_up(self, name: str) -> None:
        """Give the flag exactly the two strategies of docs/architecture.md, switch it on, then drop the set-up mark.

        Idempotent: strategies are matched by name and title and replaced, others deleted, so a retry after a
        crash at any step converges. Strategies go in before the switch: Unleash adds a 100 % default
        strategy when a flag without strategies is switched on.
        """
        existing = await self._raw_strategies(name)
        wanted = default_strategies(name)
        path = self._strategies_path(name)
        used: set[str] = set()
        for strategy in wanted:
            match = next(
                (s for s in existing if (s.name, s.title) == (strategy.name, strategy.title) and s.id not in used), None
            )
            if match is None:
                await self._call(f"add {strategy.title!r} to {name}", "POST", path, body=_wire(strategy))
            else:
                used.add(match.id)
                await self._call(
                    f"reset {strategy.title!r} of {name}", "PUT", f"{path}/{match.id}", body=_wire(strategy)
                )
        for extra in existing:
            if extra.id not in used:
                await self._call(f"delete a strategy of {name}", "DELETE", f"{path}/{extra.id}", ok=(200, 204, 404))
        await self.set_flag_enabled(name, True)
        await self._set_description(name, DESCRIPTION)

    async def apply_version_flag(self, workflow_name: str, version_id: str) -> VersionInfo:
        """Make ``version_id`` the newest version (same rules as ``LocalFlagStore``; see the module docstring)."""
        versions.flag_name(workflow_name, 0, version_id)  # validates both names before any request
        entries = await self._entries(workflow_name, include_archived=True)
        action, info = versions.flag_to_apply(entries, workflow_name, version_id)
        if action is versions.FlagApply.KEEP:
            if any(e.info == info and e.description.endswith(SETUP_MARK) for e in entries):
                await self._set_up(info.flag_name)  # a previous call stopped half-way
            return info
        if action is versions.FlagApply.REVIVE:
            await self._revive_for_deploy(info.flag_name)
        elif not await self._create(info.flag_name):
            await self._name_taken(info.flag_name)
        await self._set_up(info.flag_name)
        return info

    async def _name_taken(self, name: str) -> None:
        """Creating ``name`` answered 409: revive it if it is an archived flag of the project; else fail, retryable
        if a flag of the project took it meanwhile (the retried call sees it), not if another project holds it
        (flag names are global in Unleash)."""
        if await self._is_archived(name):
            await self._revive_for_deploy(name)
            return
        if any(f.get("name") == name for f in await self._search(name, archived=False)):
            raise FlagStoreError(f"unleash: flag {name} was created meanwhile by someone else", retryable=True)
        raise FlagStoreError(
            f"unleash: cannot create flag {name}: the name is taken, but not by a flag of project "
            f"{self.project!r} (another project?)",
            retryable=False,
        )

    async def _revive_for_deploy(self, name: str) -> None:
        await self.revive_flag(name)
        await self._set_description(name, DESCRIPTION + SETUP_MARK)

    async def _is_archived(self, name: str) -> bool:
        return any(f.get("name") == name for f in await self._search(name, archived=True))

    async def check_access(self) -> None:
        """What ``diachronic doctor`` verifies: both tokens are accepted, the project and the environment exist.
        Raises ``NotFound`` or ``FlagStoreError`` that names the setting to fix."""
        projects = self._json("list projects", await self._call("list projects", "GET", "/api/admin/projects"))
        if self.project not in {p.get("id") for p in projects.get("projects") or [] if isinstance(p, dict)}:
            raise NotFound(f"unleash: project {self.project!r} does not exist: check DIACHRONIC_UNLEASH_PROJECT")
        await self._call(
            "read the environment",
            "GET",
            f"/api/admin/environments/{self.environment}",
            missing=f"unleash: environment {self.environment!r} does not exist: check DIACHRONIC_UNLEASH_ENVIRONMENT",
        )
        if self._client_token is None:
            raise ConfigError("routing with Unleash needs a client token (DIACHRONIC_UNLEASH_CLIENT_TOKEN)")
        await self._call("fetch flags with the client token", "GET", f"/api{FEATURES_URL}", client_token=True)

    # -- routing --------------------------------------------------------------------------------------------

    async def _ensure_client(self) -> UnleashClient:
        if self._client is not None:
            return self._client
        if self._client_token is None or not self._client_token.get_secret_value():
            raise ConfigError("routing with Unleash needs a client token (DIACHRONIC_UNLEASH_CLIENT_TOKEN)")
        async with self._client_lock:
            if self._client is None:
                client = UnleashClient(
                    url=f"{self.url}/api",
                    app_name=self.app_name,
                    environment=self.environment,
                    instance_id=f"{self.app_name}-{uuid.uuid4().hex[:12]}",
                    refresh_interval=self.refresh_s,  # type: ignore[arg-type]  # APScheduler takes float seconds
                    disable_metrics=True,
                    disable_registration=True,
                    custom_headers={"Authorization": self._client_token.get_secret_value()},
                    request_timeout=max(1, round(self.timeout_s)),
                    request_retries=0,
                    custom_options={"verify": str(self.ca_bundle)} if self.ca_bundle else {},
                    cache=self._cache,
                    multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
                )
                # The first fetch is a blocking HTTP call: keep it off the event loop. A failed fetch is not an
                # error here (polling goes on); anything else is, and it must not escape untranslated.
                try:
                    await asyncio.to_thread(client.initialize_client)
                except Exception as exc:
                    await asyncio.to_thread(client.destroy)
                    raise FlagStoreError(
                        f"unleash: starting the routing client for {self.url} failed: "
                        f"{type(exc).__name__}: {self._scrub(str(exc))}",
                        retryable=True,
                    ) from None
                self._client = client
        assert self._client is not None
        return self._client

    async def route(self, workflow_name: str, workflow_id: str, *, is_test: bool = False) -> VersionInfo | None:
        """The newest flag that ``UnleashClient`` finds on for ``{userId: workflow_id, isTest}``; None if none is."""
        versions.flag_name_prefix(workflow_name)  # the same validation as every other method
        client = await self._ensure_client()
        if not self._cache.loaded.is_set():
            raise FlagStoreError(
                f"unleash: routing {workflow_name} waits for the first flag data from {self.url}", retryable=True
            )
        context = {"userId": workflow_id, "properties": context_properties(is_test)}
        for info in self._cache.index.get(workflow_name, ()):
            if client.is_enabled(info.flag_name, context):
                return info
        return None

    def _client_view(self, workflow_name: str) -> list[tuple[str, bool, list[str]]]:
        view = []
        for info in self._cache.index.get(workflow_name, ()):
            raw = self._cache.payload.get(info.flag_name, {})
            try:
                strategies = [_strategy(s) for s in raw.get("strategies") or []]
            except (ValidationError, ValueError, KeyError, TypeError, AttributeError):
                strategies = []
            view.append((info.flag_name, bool(raw.get("enabled")), _routing_shape(strategies)))
        return view

    async def wait_for_routing(self, workflow_name: str, *, timeout_s: float = 10.0) -> None:
        """Wait until routing sees the workflow's flags as the Admin API shows them now (tests, ``--wait``).

        Compares names, the environment switch and each active strategy's name, parameters and constraints of
        the last payload the client fetched, then waits for its next poll to begin: the client hands a payload
        to its engine right after caching it, within the same poll.
        """
        await self._ensure_client()
        deadline = time.monotonic() + timeout_s
        matched_at: int | None = None
        while True:
            if matched_at is not None and self._cache.polls > matched_at:
                return
            flags = await self.list_version_flags(workflow_name)
            admin = [(f.info.flag_name, f.enabled, _routing_shape(f.strategies)) for f in flags]
            if self._cache.loaded.is_set() and self._client_view(workflow_name) == admin:
                matched_at = self._cache.polls if matched_at is None else matched_at
            else:
                matched_at = None
            if time.monotonic() > deadline:
                raise FlagStoreError(
                    f"unleash: routing did not catch up with the flags of {workflow_name} within {timeout_s:g}s",
                    retryable=True,
                )
            await asyncio.sleep(min(0.05, self.refresh_s / 4))

    async def close(self) -> None:
        """Stop the client's polling thread and close the HTTP connections; the store is unusable afterwards."""
        if self._closed:
            return
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.destroy)
        await self._http.aclose()
