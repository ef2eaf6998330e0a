"""How ``UnleashFlagStore`` translates HTTP trouble, on a mock transport (no server): one place, clear messages,
retryable exactly when waiting can help, and never a token in what it says."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from tests.http_client_errors import HTTPX_EXCEPTIONS, instance_of

from diachronic.backends import open_flag_store
from diachronic.errors import HTTP_CLIENT_ERRORS, ConcurrentEdit, ConfigError, FlagStoreError, NotFound
from diachronic.flags import GENERAL_TRAFFIC_TITLE
from diachronic.flags.evaluation import new_rollout
from diachronic.flags.unleash import UnleashFlagStore
from diachronic.settings import Settings

ADMIN = "*:*.admin-secret-0123456789abcdef"
FLAG = "workflow.wf.seqId.000.version.v1"
CLIENT = "default:development.client-secret-0123456789abcdef"


def store_answering(handler: Callable[[httpx.Request], httpx.Response]) -> UnleashFlagStore:
    return UnleashFlagStore(
        "http://unleash.test/api/", ADMIN, CLIENT, transport=httpx.MockTransport(handler), timeout_s=1
    )


def answer(status: int, body: object = None, text: str | None = None) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text)
        return httpx.Response(status, json=body)

    return handler


def assert_no_secret(text: str) -> None:
    for secret in (ADMIN, CLIENT, ADMIN.rpartition(".")[2], CLIENT.rpartition(".")[2]):
        assert secret not in text


@pytest.mark.parametrize(
    ("status", "retryable", "words"),
    [
        pytest.param(500, True, "HTTP 500", id="500"),
        pytest.param(502, True, "HTTP 502", id="502"),
        pytest.param(503, True, "HTTP 503", id="503"),
        pytest.param(429, True, "HTTP 429", id="429 too many requests"),
        pytest.param(400, False, "HTTP 400", id="400"),
        pytest.param(409, False, "HTTP 409", id="409"),
        pytest.param(401, False, "DIACHRONIC_UNLEASH_ADMIN_TOKEN", id="401 names the variable, not the value"),
        pytest.param(403, False, "HTTP 403", id="403"),
    ],
)
async def test_status_codes_become_flag_store_errors(status: int, retryable: bool, words: str) -> None:
    body = {"name": "Error", "message": f"bad thing, you sent {ADMIN}", "details": [{"message": f"echo {CLIENT}"}]}
    store = store_answering(answer(status, body))
    with pytest.raises(FlagStoreError) as caught:
        await store.list_version_flags("wf")
    await store.close()
    assert caught.value.retryable is retryable
    assert words in caught.value.message
    assert "search flags workflow.wf.*" in caught.value.message
    assert_no_secret(str(caught.value) + repr(caught.value))


async def test_a_404_on_a_flag_is_not_found() -> None:
    store = store_answering(answer(404, {"name": "NotFoundError", "message": "Could not find feature flag"}))
    with pytest.raises(NotFound):
        await store.get_strategies("workflow.wf.seqId.000.version.v1")
    await store.close()


async def test_an_html_error_page_is_summarised() -> None:
    page = "<html><body><h1>502 Bad Gateway</h1>" + "x" * 1000 + "</body></html>"
    store = store_answering(answer(502, text=page))
    with pytest.raises(FlagStoreError) as caught:
        await store.list_version_flags("wf")
    await store.close()
    assert caught.value.retryable and len(caught.value.message) < 420


@pytest.mark.parametrize("error_class", HTTPX_EXCEPTIONS, ids=lambda c: c.__name__)
async def test_every_httpx_error_becomes_a_typed_flag_store_error(error_class: type[Exception]) -> None:
    """Meta-test: whatever httpx raises, callers only ever see FlagStoreError, retryable as ``HTTP_CLIENT_ERRORS``
    says (httpx's ``test_httpcore_all_exceptions_mapped`` is the model); never retried inside the adapter."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        raise instance_of(error_class, request)

    store = store_answering(handler)
    with pytest.raises(FlagStoreError) as caught:
        await store.list_version_flags("wf")
    await store.close()
    assert caught.value.retryable is HTTP_CLIENT_ERRORS[error_class.__name__]
    assert len(sent) == 1
    assert "http://unleash.test" in caught.value.message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no request (and header) attached
    assert_no_secret(str(caught.value))


async def test_a_closed_store_says_so() -> None:
    store = store_answering(answer(200, {"features": [], "total": 0}))
    await store.close()
    with pytest.raises(FlagStoreError, match="closed"):
        await store.list_version_flags("wf")


async def test_the_admin_token_is_sent_as_the_authorization_header() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(200, json={"features": [], "total": 0})

    store = store_answering(handler)
    assert await store.list_version_flags("wf") == []
    await store.close()
    assert seen == [ADMIN]


def test_settings_build_the_store_without_showing_the_tokens() -> None:
    settings = Settings(
        flags="unleash",
        unleash_url="http://u:4242",
        unleash_admin_token=ADMIN,  # type: ignore[arg-type]
        unleash_client_token=CLIENT,  # type: ignore[arg-type]
        unleash_project="p",
        unleash_environment="production",
        unleash_refresh_s=0.5,
    )
    store = UnleashFlagStore.from_settings(settings)
    assert (store.url, store.project, store.environment, store.refresh_s) == ("http://u:4242", "p", "production", 0.5)
    assert_no_secret(repr(store) + str(store) + repr(settings) + str(vars(store)))


def test_settings_without_an_admin_token_are_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DIACHRONIC_UNLEASH_ADMIN_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="DIACHRONIC_UNLEASH_ADMIN_TOKEN"):
        open_flag_store(Settings(flags="unleash", data_dir=tmp_path))


def test_without_tokens_the_local_unleash_of_the_data_folder_is_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What ``make unleash`` leaves in the data folder is enough for ``diachronic dev --flags unleash``."""
    for name in ("ADMIN_TOKEN", "CLIENT_TOKEN", "URL", "PROJECT", "ENVIRONMENT"):
        monkeypatch.delenv(f"DIACHRONIC_UNLEASH_{name}", raising=False)
    (tmp_path / "unleash").mkdir()
    (tmp_path / "unleash" / "state.env").write_text(
        "export DIACHRONIC_FLAGS=unleash\n"
        "export DIACHRONIC_UNLEASH_URL=http://127.0.0.1:4343\n"
        f"export DIACHRONIC_UNLEASH_ADMIN_TOKEN='{ADMIN}'\n"
        f"export DIACHRONIC_UNLEASH_CLIENT_TOKEN='{CLIENT}'\n"
        "export DIACHRONIC_UNLEASH_PROJECT=default\n"
        "export DIACHRONIC_UNLEASH_ENVIRONMENT=development\n"
    )
    store = open_flag_store(Settings(flags="unleash", data_dir=tmp_path))
    assert isinstance(store, UnleashFlagStore)
    assert (store.url, store.project, store.environment) == ("http://127.0.0.1:4343", "default", "development")
    assert store._admin_token.get_secret_value() == ADMIN
    assert store._client_token is not None and store._client_token.get_secret_value() == CLIENT


def name_taken(live_after_create: list[dict[str, object]], calls: list[str]) -> UnleashFlagStore:
    """Creating the flag answers 409; the project's live flags are none before, ``live_after_create`` after."""
    created = False

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal created
        calls.append(f"{request.method} {request.url.path}")
        if request.url.path == "/api/admin/search/features":
            live = live_after_create if created and request.url.params["archived"] == "IS:false" else []
            return httpx.Response(200, json={"features": live, "total": len(live)})
        created = True
        return httpx.Response(409, json={"name": "NameExistsError", "message": "Feature already exists"})

    return store_answering(handler)


async def test_a_name_taken_outside_the_project_is_a_clear_non_retryable_error() -> None:
    """Flag names are global in Unleash: a 409 for a name that no flag of our project has cannot be waited out."""
    calls: list[str] = []
    store = name_taken([], calls)
    with pytest.raises(FlagStoreError) as caught:
        await store.apply_version_flag("wf", "v1")
    await store.close()
    assert not caught.value.retryable
    assert "workflow.wf.seqId.000.version.v1" in caught.value.message and "another project" in caught.value.message
    assert calls.count("POST /api/admin/projects/default/features") == 1


async def test_a_name_a_concurrent_deploy_took_is_retryable_and_tried_once() -> None:
    """The same version deployed at the same moment by someone else: the retried step (Temporal's) will find it."""
    calls: list[str] = []
    store = name_taken([{"name": FLAG, "environments": []}], calls)
    with pytest.raises(FlagStoreError) as caught:
        await store.apply_version_flag("wf", "v1")
    await store.close()
    assert caught.value.retryable and "created meanwhile" in caught.value.message
    assert calls.count("POST /api/admin/projects/default/features") == 1


def flag_answering(
    patch_status: int, patch_body: object, rollouts: list[str | None]
) -> Callable[[httpx.Request], httpx.Response]:
    """A flag whose ``All other traffic`` holds ``rollouts[0]``, then ``rollouts[1]``... on each read (None: that
    strategy is gone); every PATCH answers ``patch_status`` with ``patch_body``."""

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PATCH":
            return httpx.Response(patch_status, json=patch_body)
        rollout = rollouts.pop(0) if len(rollouts) > 1 else rollouts[0]
        strategies = [] if rollout is None else [new_rollout(FLAG, GENERAL_TRAFFIC_TITLE, int(rollout), id="s1")]
        environment = {"name": "development", "strategies": [s.model_dump(by_alias=True) for s in strategies]}
        return httpx.Response(200, json={"name": FLAG, "environments": [environment]})

    return handler


TEST_FAILED = {"name": "UnknownError", "message": "Test operation failed\nname: TEST_OPERATION_FAILED\nindex: 3"}
GONE = {"name": "NotFoundError", "message": "Could not find strategy with id: s1"}


@pytest.mark.parametrize(
    ("status", "body", "read_again", "found"),
    [
        pytest.param(500, TEST_FAILED, "35", 35, id="a failed test: what Unleash holds now"),
        pytest.param(500, TEST_FAILED, "10", 10, id="a failed test, changed back since: still refused"),
        pytest.param(404, GONE, None, None, id="the strategy deleted since it was read"),
    ],
)
async def test_a_refused_conditional_write_is_a_concurrent_edit(
    status: int, body: object, read_again: str | None, found: int | None
) -> None:
    """Unleash 7.5.1 answers a failed JSON Patch ``test`` with HTTP 500 and TEST_OPERATION_FAILED in the body."""
    store = store_answering(flag_answering(status, body, ["10", read_again]))
    with pytest.raises(ConcurrentEdit) as caught:
        await store.set_general_percent(FLAG, 20, expected=10)
    await store.close()
    assert caught.value.found == found and not caught.value.retryable


async def test_any_other_500_on_a_conditional_write_stays_a_retryable_server_fault() -> None:
    store = store_answering(flag_answering(500, {"name": "UnknownError", "message": "database is down"}, ["10"]))
    with pytest.raises(FlagStoreError) as caught:
        await store.set_general_percent(FLAG, 20, expected=10)
    await store.close()
    assert caught.value.retryable and "HTTP 500" in caught.value.message
