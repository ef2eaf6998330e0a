"""GitHub's REST API, the part diachronic uses: deployment statuses, and a GitHub App's installation tokens.

Every request goes through ``GitHubDeployments._request``, the one place where failures become ``GitHubError``:
retryable when trying again can help (the network, 5xx, rate limits, with GitHub's ``Retry-After`` as the next
retry's delay), not otherwise (401, 403, 404, 422). There is no retry loop here: Temporal retries the activity.
Credentials travel only in the Authorization header; no message, log line or error carries them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import SecretStr

from diachronic.contracts import GitHubDeploymentRef
from diachronic.errors import ConfigError, GitHubError, http_status_retryable
from diachronic.github.statuses import DeploymentStatusBody
from diachronic.outbound import retry_after, unreachable
from diachronic.settings import Settings

__all__ = ["API_VERSION", "AppAuth", "GitHubAuth", "GitHubDeployments", "TokenAuth", "failure_of"]

API_VERSION = "2022-11-28"
SECONDARY_LIMIT_WAIT_S = 60.0  # GitHub's advice when a secondary rate limit names no time
TOKEN_MARGIN_S = 300.0  # renew an installation token this long before it expires
JWT_LIFETIME_S = 540  # GitHub accepts at most 10 minutes
MAX_CACHED = 1000


class GitHubAuth(Protocol):
    """How requests for a repository are authorized."""

    async def authorization(self, api: GitHubDeployments, repository: str) -> str:
        """The Authorization header's value for requests about ``repository``."""
        ...

    def forget(self, repository: str) -> bool:
        """Drop what is cached for ``repository`` after GitHub refused it; True if there was something."""
        ...


class TokenAuth:
    """A personal access token, a fine-grained token or ``GITHUB_TOKEN``: needs ``deployments: write``."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token

    async def authorization(self, api: GitHubDeployments, repository: str) -> str:
        return f"Bearer {self._token.get_secret_value()}"

    def forget(self, repository: str) -> bool:
        return False


class AppAuth:
    """A GitHub App: a JWT signed with its private key buys an installation token (valid one hour, cached and
    renewed before it expires). The installation is the configured one, or the one installed on the repository."""

    def __init__(
        self,
        app_id: str,
        private_key: SecretStr,
        *,
        installation_id: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        try:
            self._key = load_pem_private_key(private_key.get_secret_value().encode(), password=None)
        except (ValueError, TypeError):
            raise ConfigError("the GitHub App private key is not a PEM private key without a passphrase") from None
        self._app_id = app_id
        self._installation_id = installation_id
        self._clock = clock
        self._installations: dict[str, int] = {}
        self._tokens: dict[int, tuple[str, float]] = {}

    async def as_app(self, api: GitHubDeployments, method: str, path: str, what: str) -> dict[str, Any]:
        """A request made as the App itself (not as an installation): authorized by a fresh JWT."""
        return await api.request(
            method, path, authorization=f"Bearer {self.app_jwt()}", what=f"{what} (GitHub App {self._app_id})"
        )

    def app_jwt(self) -> str:
        now = int(self._clock())
        claims = {"iat": now - 60, "exp": now + JWT_LIFETIME_S, "iss": self._app_id}  # iat: allow clock drift
        return jwt.encode(claims, self._key, algorithm="RS256")  # type: ignore[arg-type]

    async def authorization(self, api: GitHubDeployments, repository: str) -> str:
        installation = self._installation_id or await self._installation_of(api, repository)
        token, expires = self._tokens.get(installation, ("", 0.0))
        if expires - self._clock() < TOKEN_MARGIN_S:
            answer = await self.as_app(api, "POST", f"/app/installations/{installation}/access_tokens", "a token")
            token = str(answer["token"])
            expires = datetime.fromisoformat(str(answer["expires_at"]).replace("Z", "+00:00")).timestamp()
            _remember(self._tokens, installation, (token, expires))
        return f"Bearer {token}"

    async def _installation_of(self, api: GitHubDeployments, repository: str) -> int:
        found = self._installations.get(repository.lower())
        if found is None:
            answer = await self.as_app(
                api, "GET", f"/repos/{repository}/installation", f"its installation on {repository}"
            )
            found = int(answer["id"])
            _remember(self._installations, repository.lower(), found)
        return found

    def forget(self, repository: str) -> bool:
        installation = self._installation_id or self._installations.pop(repository.lower(), None)
        return installation is not None and self._tokens.pop(installation, None) is not None


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    cache[key] = value
    while len(cache) > MAX_CACHED:
        del cache[next(iter(cache))]


def _message(response: httpx.Response) -> str:
    """GitHub's own words (``message``, and each ``errors`` entry of a 422), never our request."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    parts = [str(body.get("message") or "")]
    for error in body.get("errors") or []:
        if isinstance(error, dict):
            parts.append(str(error.get("message") or error.get("code") or ""))
        else:
            parts.append(str(error))
    return "; ".join(p for p in parts if p)[:300]


def failure_of(response: httpx.Response, what: str, *, now: float) -> GitHubError:
    """The typed error for a failed answer: whether a retry can help, and when to try again."""
    status, said = response.status_code, _message(response)
    detail = f"GitHub answered {status} for {what}" + (f": {said}" if said else "")
    wait = retry_after(response, now=now)
    rate_limited = status == 429 or (status == 403 and (wait is not None or "rate limit" in said.lower()))
    if rate_limited:
        return GitHubError(
            f"{detail} (rate limited)", retryable=True, retry_after_s=wait or SECONDARY_LIMIT_WAIT_S, status=status
        )
    if http_status_retryable(status):
        return GitHubError(detail, retryable=True, retry_after_s=wait, status=status)
    hints = {
        401: "the credentials were refused: check DIACHRONIC_GITHUB_TOKEN or the GitHub App's id and key",
        403: "not allowed: the token or the App needs the permission `deployments: write` on the repository",
        404: "not found, or not visible to these credentials",
    }
    return GitHubError(detail + (f" ({hints[status]})" if status in hints else ""), retryable=False, status=status)


class GitHubDeployments:
    """Creates statuses on GitHub deployments, against github.com or a GitHub Enterprise Server (``api_url``)."""

    def __init__(
        self,
        *,
        api_url: str,
        auth: GitHubAuth,
        timeout_s: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._auth = auth
        self._clock = clock
        self._http = httpx.AsyncClient(
            base_url=self.api_url + "/",
            timeout=timeout_s,
            transport=transport,
            headers={
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "diachronic",
            },
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> GitHubDeployments | None:
        """The configured GitHub, or None when no credentials are set (statuses are then not reported)."""
        auth: GitHubAuth
        if settings.github_app_id is not None:
            key = settings.github_app_private_key
            if settings.github_app_private_key_file is not None:
                try:
                    key = SecretStr(settings.github_app_private_key_file.read_text())
                except OSError as error:
                    raise ConfigError(
                        f"cannot read DIACHRONIC_GITHUB_APP_PRIVATE_KEY_FILE "
                        f"{settings.github_app_private_key_file}: {error.strerror}"
                    ) from None
            assert key is not None  # Settings checks that an App has a key
            auth = AppAuth(settings.github_app_id, key, installation_id=settings.github_app_installation_id)
        elif settings.github_token is not None:
            auth = TokenAuth(settings.github_token)
        else:
            return None
        return cls(api_url=settings.github_api_url, auth=auth)

    async def request(
        self, method: str, path: str, *, authorization: str, what: str, json: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One request; its JSON answer, or a ``GitHubError`` that says whether to retry."""
        with unreachable(
            lambda problem, retry: GitHubError(f"GitHub at {self.api_url}, {what}: {problem}", retryable=retry)
        ):
            response = await self._http.request(
                method, path.lstrip("/"), json=json, headers={"Authorization": authorization}
            )
        if response.status_code >= 400:
            raise failure_of(response, what, now=self._clock())
        try:
            body = response.json()
        except ValueError:
            raise GitHubError(f"GitHub answered {what} with something that is not JSON", retryable=True) from None
        return body if isinstance(body, dict) else {"items": body}

    async def create_status(self, ref: GitHubDeploymentRef, status: DeploymentStatusBody) -> int:
        """Create one status on the GitHub deployment ``ref``; returns its id."""
        path = f"/repos/{ref.repository}/deployments/{ref.deployment_id}/statuses"
        what = f"a {status.state} status on deployment {ref.deployment_id} of {ref.repository}"
        authorization = await self._auth.authorization(self, ref.repository)
        try:
            answer = await self.request(
                "POST", path, authorization=authorization, what=what, json=status.model_dump(exclude_none=True)
            )
        except GitHubError as error:
            if error.status == 401 and self._auth.forget(ref.repository):
                error.retryable = True  # a cached installation token went stale: the next attempt gets a new one
            raise
        return int(answer.get("id", 0))

    async def check(self) -> str:
        """What ``diachronic doctor`` says: GitHub answers and accepts the credentials."""
        if isinstance(self._auth, AppAuth):
            app = await self._auth.as_app(self, "GET", "/app", "the App")
            return f"GitHub App {app.get('slug') or app.get('id')} accepted by {self.api_url}"
        limits = await self.request(
            "GET", "/rate_limit", authorization=await self._auth.authorization(self, ""), what="the rate limit"
        )
        core = limits.get("resources", {}).get("core", {})
        return (
            f"token accepted by {self.api_url}; {core.get('remaining', '?')} of {core.get('limit', '?')} requests left"
        )

    async def close(self) -> None:
        await self._http.aclose()
