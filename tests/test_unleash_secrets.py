"""Unleash tokens never appear in logs (any logger, DEBUG included), errors, reprs or CLI output (docs/architecture.md),
on the real server: success, refused tokens, a server that is not there, and the ``diachronic flags`` command."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr
from tests.unleash_fixtures import UnleashServer, throwaway_workflow
from typer.testing import CliRunner

from diachronic.errors import DiachronicError
from diachronic.flags.unleash import UnleashFlagStore

pytestmark = pytest.mark.unleash


@pytest.fixture
async def wf(unleash: UnleashServer) -> AsyncIterator[str]:
    async with throwaway_workflow(unleash, "secret") as name:
        yield name


def secrets_of(*tokens: SecretStr) -> list[str]:
    """Each token whole and its secret part (after ``project:environment.``)."""
    values = [t.get_secret_value() for t in tokens]
    return values + [v.rpartition(".")[2] for v in values]


def assert_clean(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in text, "a token leaked"


async def test_tokens_never_reach_logs_errors_or_reprs(
    unleash: UnleashServer, wf: str, caplog: pytest.LogCaptureFixture
) -> None:
    wrong_admin = SecretStr("*:*.wrong-admin-" + uuid.uuid4().hex)
    wrong_client = SecretStr("default:development.wrong-client-" + uuid.uuid4().hex)
    secrets = secrets_of(unleash.admin_token, unleash.client_token, wrong_admin, wrong_client)
    said: list[str] = []
    with (
        caplog.at_level(logging.DEBUG),
        caplog.at_level(logging.DEBUG, logger="UnleashClient"),  # it is set to WARNING by default
    ):
        good = unleash.store(refresh_s=0.2)
        said.append(repr(good))
        v1 = await good.apply_version_flag(wf, "v1")
        await good.set_general_percent(v1.flag_name, 100)
        await good.wait_for_routing(wf)
        said.append(repr(await good.route(wf, "order-1")))
        said.append(repr(await good.list_version_flags(wf, include_archived=True)))

        refused = UnleashFlagStore(unleash.url, wrong_admin, wrong_client, timeout_s=2)
        gone = UnleashFlagStore("http://127.0.0.1:9", unleash.admin_token, unleash.client_token, timeout_s=2)
        for call in (
            refused.list_version_flags(wf),
            refused.apply_version_flag(wf, "v2"),
            refused.route(wf, "order-1"),  # the client token is refused too: no data, so routing waits
            gone.set_general_percent(v1.flag_name, 5),
            gone.route(wf, "order-1"),
            good.get_strategies(f"workflow.{wf}.seqId.009.version.nope"),
        ):
            with pytest.raises(DiachronicError) as caught:
                await call
            said += [str(caught.value), repr(caught.value), caught.exconly()]
        for store in (good, refused, gone):
            await store.close()
    said += [r.getMessage() for r in caplog.records] + [r.exc_text or "" for r in caplog.records]
    said.append(caplog.text)
    assert any("401" in s for s in said)  # the refused calls were really made
    assert any(r.name.startswith("UnleashClient") for r in caplog.records)  # and the SDK's own logs were seen
    assert_clean("\n".join(said), secrets)


def test_the_flags_command_shows_no_token(unleash: UnleashServer, wf: str) -> None:
    from diachronic.cli import app, status  # noqa: F401  (importing status registers `flags`)

    env = unleash.variables()
    runner = CliRunner()
    listed = runner.invoke(app, ["flags", "list", wf, "--archived"], env=env)
    assert listed.exit_code == 0, listed.output
    refused = runner.invoke(
        app, ["flags", "list", wf], env={**env, "DIACHRONIC_UNLEASH_ADMIN_TOKEN": "*:*.not-the-token-0123456789"}
    )
    assert refused.exit_code != 0 and "401" in refused.output
    assert_clean(
        listed.output + refused.output,
        secrets_of(unleash.admin_token, unleash.client_token, SecretStr("*:*.not-the-token-0123456789")),
    )
