"""``UnleashFlagStore`` against the real Unleash: the shared contract suite, the equivalence of the embedded
evaluation with ``UnleashClient``'s, and what only Unleash has (human edits, half-made flags, bad content).

Every test works on its own workflow name: the Unleash database is shared by the whole run (and by runs).
"""

from __future__ import annotations

import asyncio
import logging
import random
import string
import uuid
from collections.abc import AsyncIterator

import pytest
from tests.flag_contract import FlagStoreContract
from tests.unleash_fixtures import HumanAdmin, Interleave, UnleashHarness, UnleashServer

from diachronic.errors import ConfigError, InvalidInput, NotFound
from diachronic.flags import DARK_DEPLOY_TITLE, GENERAL_TRAFFIC_TITLE
from diachronic.flags.evaluation import choose, context_properties, default_strategies, flag_enabled, general_percent
from diachronic.flags.unleash import DESCRIPTION, SETUP_MARK, UnleashFlagStore, base_url
from diachronic.versions import flag_name

pytestmark = pytest.mark.unleash


@pytest.fixture(scope="module")
async def human(unleash: UnleashServer) -> AsyncIterator[HumanAdmin]:
    h = HumanAdmin(unleash)
    yield h
    await h.close()


@pytest.fixture(scope="module")
async def created(human: HumanAdmin) -> AsyncIterator[set[str]]:
    """The workflows this module wrote flags for: deleted for good at its end, so runs do not pile up flags."""
    workflows: set[str] = set()
    yield workflows
    await human.delete_workflows(workflows)


@pytest.fixture(scope="module")
def transport() -> Interleave:
    return Interleave()


@pytest.fixture(scope="module")
async def store(unleash: UnleashServer, created: set[str], transport: Interleave) -> AsyncIterator[UnleashFlagStore]:
    """One store for the module; a short refresh so that routing catches up with writes quickly."""
    s = unleash.store(refresh_s=0.2, transport=transport)
    yield s
    await s.close()


@pytest.fixture
def wf(created: set[str]) -> str:
    name = f"wf-{uuid.uuid4().hex[:10]}"
    created.add(name)
    return name


class TestUnleashFlagStoreContract(FlagStoreContract):
    @pytest.fixture
    def wf(self, created: set[str]) -> str:
        name = f"wf-{uuid.uuid4().hex[:10]}"
        created.add(name)
        return name

    @pytest.fixture
    async def harness(
        self, store: UnleashFlagStore, human: HumanAdmin, created: set[str], transport: Interleave, wf: str
    ) -> AsyncIterator[UnleashHarness]:
        h = UnleashHarness(store, human, created, transport)
        yield h
        h.forget()


# -- equivalence: the embedded evaluation decides exactly as UnleashClient against the real server ---------------

PERCENTS = [1, 10, 33, 50, 99]


@pytest.fixture(scope="module")
async def rollouts(store: UnleashFlagStore, created: set[str]) -> dict[int, str]:
    """One workflow per percentage, set up together: the old version at 100 %, the new one at the percentage."""
    workflows = {p: f"eq{p}-{uuid.uuid4().hex[:8]}" for p in PERCENTS}
    created.update(workflows.values())

    async def set_up(percent: int, workflow: str) -> None:
        old = await store.apply_version_flag(workflow, "old")
        await store.set_general_percent(old.flag_name, 100)
        new = await store.apply_version_flag(workflow, "new")
        await store.set_general_percent(new.flag_name, percent)
        await store.wait_for_routing(workflow)

    await asyncio.gather(*(set_up(p, w) for p, w in workflows.items()))
    return workflows


def _random_ids(rng: random.Random, n: int) -> list[str]:
    """Workflow ids of every shape: uuids, short and long strings, odd characters."""
    alphabet = string.ascii_letters + string.digits + "-_:./ é"
    return [
        f"order-{uuid.UUID(int=rng.getrandbits(128))}"
        if i % 2
        else "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        for i in range(n)
    ]


@pytest.mark.parametrize("percent", PERCENTS)
async def test_embedded_evaluation_equals_unleash_client(
    store: UnleashFlagStore, rollouts: dict[int, str], percent: int
) -> None:
    """10 000 random ids: ``flag_enabled`` == ``UnleashClient.is_enabled`` on the new flag, with and without
    isTest; and for a sample, the store's routing == ``choose`` over the listed flags (newest enabled wins)."""
    wf = rollouts[percent]
    flags = await store.list_version_flags(wf)
    new_flag = flags[0]
    client = await store._ensure_client()
    rng = random.Random(f"equivalence:{percent}")
    on_new = 0
    for i, workflow_id in enumerate(_random_ids(rng, 10_000)):
        is_test = i % 20 == 0
        context = {"userId": workflow_id, "properties": context_properties(is_test)}
        enabled = client.is_enabled(new_flag.info.flag_name, context)
        assert enabled == flag_enabled(new_flag, workflow_id, is_test), workflow_id
        on_new += enabled and not is_test
        if i % 10 == 0:
            expected = choose(flags, workflow_id, is_test)
            assert await store.route(wf, workflow_id, is_test=is_test) == (expected and expected.info), workflow_id
    share = on_new / 9_500
    assert abs(share - percent / 100) < 0.03, share


# -- what is particular to Unleash ---------------------------------------------------------------------------------


def test_the_base_url_accepts_the_usual_spellings() -> None:
    for url in ("http://u:4242", "http://u:4242/", "http://u:4242/api", "http://u:4242/api/"):
        assert base_url(url) == "http://u:4242"


def test_an_admin_token_is_required() -> None:
    with pytest.raises(ConfigError):
        UnleashFlagStore("http://127.0.0.1:1", "")


async def test_routing_without_a_client_token_is_a_config_error(unleash: UnleashServer, wf: str) -> None:
    store = UnleashFlagStore(unleash.url, unleash.admin_token, None, project=unleash.project)
    try:
        with pytest.raises(ConfigError, match="CLIENT_TOKEN"):
            await store.route(wf, "order-1")
    finally:
        await store.close()


async def test_invalid_workflow_names_are_rejected_before_any_request(store: UnleashFlagStore) -> None:
    for call in (store.list_version_flags("a.b"), store.route("a.b", "x"), store.apply_version_flag("a", "v.1")):
        with pytest.raises(InvalidInput):
            await call


async def test_new_flags_are_described_like_the_original(store: UnleashFlagStore, human: HumanAdmin, wf: str) -> None:
    info = await store.apply_version_flag(wf, "v1")
    feature = await human.feature(info.flag_name)
    assert (feature["description"], feature["type"], feature["impressionData"]) == (DESCRIPTION, "release", True)


async def test_a_half_made_flag_is_finished_by_the_retried_deploy(
    store: UnleashFlagStore, human: HumanAdmin, wf: str
) -> None:
    """A deploy that stopped after creating the flag (still marked) is completed, not returned half-made."""
    name = flag_name(wf, 0, "v1")
    await human.create_flag(name, description=DESCRIPTION + SETUP_MARK)
    await human.add_strategy(name, default_strategies(name)[0])
    info = await store.apply_version_flag(wf, "v1")
    assert info.flag_name == name
    [flag] = await store.list_version_flags(wf)
    assert flag.enabled and [s.title for s in flag.strategies] == [DARK_DEPLOY_TITLE, GENERAL_TRAFFIC_TITLE]
    assert general_percent(flag) == 0
    assert (await human.feature(name))["description"] == DESCRIPTION


async def test_strategies_deleted_by_hand_are_a_human_edit_not_a_crash(
    store: UnleashFlagStore, human: HumanAdmin, wf: str
) -> None:
    old = await store.apply_version_flag(wf, "v1")
    await store.set_general_percent(old.flag_name, 100)
    new = await store.apply_version_flag(wf, "v2")
    await human.delete_strategy(new.flag_name, DARK_DEPLOY_TITLE)
    await human.delete_strategy(new.flag_name, GENERAL_TRAFFIC_TITLE)
    # Unleash switches a flag off when its last strategy goes; a redeploy of that version respects the edit.
    assert await store.apply_version_flag(wf, "v2") == new
    [flag, _] = await store.list_version_flags(wf)
    assert flag.info == new and flag.strategies == [] and not flag.enabled
    await store.wait_for_routing(wf)
    assert await store.route(wf, "order-1", is_test=True) == old
    await store.set_general_percent(new.flag_name, 10)  # the rollout's next step re-creates only its own strategy
    assert [s.title for s in await store.get_strategies(new.flag_name)] == [GENERAL_TRAFFIC_TITLE]


async def test_strategies_a_human_added_are_listed_and_do_not_break_routing(
    store: UnleashFlagStore, human: HumanAdmin, wf: str
) -> None:
    v1 = await store.apply_version_flag(wf, "v1")
    await human.add_raw_strategy(
        v1.flag_name,
        {
            "name": "default",
            "title": "Only big customers",
            "constraints": [{"contextName": "currentTime", "operator": "DATE_AFTER", "value": "2020-01-01T00:00:00Z"}],
            "parameters": {},
        },
    )
    [flag] = await store.list_version_flags(wf)
    assert [s.title for s in flag.strategies] == [DARK_DEPLOY_TITLE, GENERAL_TRAFFIC_TITLE, "Only big customers"]
    assert flag.strategies[2].constraints[0].values == ["2020-01-01T00:00:00Z"]
    await store.wait_for_routing(wf)
    assert await store.route(wf, "order-1", is_test=True) == v1


async def test_look_alike_flags_are_reported_by_name_and_skipped(
    store: UnleashFlagStore, human: HumanAdmin, wf: str, caplog: pytest.LogCaptureFixture
) -> None:
    bad = f"workflow.{wf}.seqId.12x.version.v1"
    await human.seed_flag(bad, general_percent=100)
    good = await store.apply_version_flag(wf, "v1")
    with caplog.at_level(logging.WARNING, logger="diachronic.flags.unleash"):
        assert [f.info for f in await store.list_version_flags(wf, include_archived=True)] == [good]
        await store.wait_for_routing(wf)
        assert await store.route(wf, "order-1") is None  # the look-alike at 100 % never routes anywhere
    assert any(bad in r.getMessage() for r in caplog.records)


async def test_an_unknown_flag_is_not_found_everywhere(store: UnleashFlagStore, wf: str) -> None:
    name = flag_name(wf, 0, "nope")
    for call in (store.get_strategies(name), store.set_general_percent(name, 5), store.archive_flag(name)):
        with pytest.raises(NotFound):
            await call


async def test_archived_flags_cannot_get_a_percent(store: UnleashFlagStore, wf: str) -> None:
    v1 = await store.apply_version_flag(wf, "v1")
    await store.archive_flag(v1.flag_name)
    with pytest.raises(NotFound):
        await store.set_general_percent(v1.flag_name, 10)
    assert [s.title for s in await store.get_strategies(v1.flag_name)] == [DARK_DEPLOY_TITLE, GENERAL_TRAFFIC_TITLE]


async def test_a_flag_revived_by_hand_is_live_again(store: UnleashFlagStore, wf: str) -> None:
    v1 = await store.apply_version_flag(wf, "v1")
    await store.archive_flag(v1.flag_name)
    await store.revive_flag(v1.flag_name)
    [flag] = await store.list_version_flags(wf)
    assert flag.info == v1 and not flag.archived


async def test_listing_pages_through_more_than_one_search_page(
    store: UnleashFlagStore, human: HumanAdmin, wf: str
) -> None:
    for seq in range(105):
        await human.create_flag(flag_name(wf, seq, f"v{seq}"))
    flags = await store.list_version_flags(wf)
    assert [f.info.seq_id for f in flags] == list(range(104, -1, -1))
