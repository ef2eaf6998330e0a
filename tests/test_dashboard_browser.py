"""The dashboard in a real browser: Debian's Chromium (``make install`` installs it), driven headless by Playwright,
against the app on loopback, the real Temporal dev server and a CI worker.

``DIACHRONIC_DASHBOARD_SCREENSHOT=docs/img/dashboard.png`` makes the rollout test save its mid-rollout screenshot
there (that is how the README's picture is made)."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, Route, async_playwright
from temporalio.worker import Worker
from tests.ci_helpers import CIHarness, deploy_served, event, fast, start_old
from tests.conditions import eventually
from tests.http_helpers import TOKEN

from diachronic.ci import client as ci
from diachronic.ci.contracts import CanaryOptions
from diachronic.ci.freeze import FreezeWorkflow, lift_freeze, set_freeze
from diachronic.ci.planner.schedule import parse_steps
from diachronic.contracts import ci_workflow_id

pytestmark = [pytest.mark.devserver, pytest.mark.usefixtures("wf_served")]

CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium keeps trying to reach outside hosts (platform notes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = os.environ.get("DIACHRONIC_DASHBOARD_SCREENSHOT")
# What Chromium logs for a fetch answered 4xx: expected when a control is refused, nothing else is.
REFUSED_FETCH = re.compile(r"^Failed to load resource: the server responded with a status of 4(01|22) ")


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed: `make install` installs it (apt-get install chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
def wf() -> str:
    return "subscription-" + uuid.uuid4().hex[:4]


@dataclass
class Tab:
    page: Page
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    outside_requests: list[str] = field(default_factory=list)


@pytest.fixture
async def tab(browser: Browser, http: httpx.AsyncClient) -> AsyncIterator[Tab]:
    base = str(http.base_url).rstrip("/")
    context = await browser.new_context(base_url=base, viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(20_000)
    watched = Tab(page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watched.console_errors.append(message.text)

    async def only_loopback(route: Route) -> None:
        if route.request.url.startswith(base + "/"):
            await route.continue_()
        else:  # the page must work offline: nothing may leave this machine
            watched.outside_requests.append(route.request.url)
            await route.abort()

    page.on("console", on_console)
    page.on("pageerror", lambda error: watched.page_errors.append(str(error)))
    await context.route("**/*", only_loopback)
    yield watched
    await context.close()


def card(tab: Tab, wf: str) -> str:
    return f'article[data-workflow="{wf}"]'


async def phase(tab: Tab, wf: str) -> str | None:
    locator = tab.page.locator(f'{card(tab, wf)} h2 [data-field="phase"]')
    return await locator.get_attribute("data-phase") if await locator.count() else None


async def number(tab: Tab, selector: str) -> float | None:
    locator = tab.page.locator(selector)
    if not await locator.count():
        return None
    value = await locator.first.get_attribute("data-value")
    return None if value is None else float(value)


async def wait_for_phase(tab: Tab, wf: str, wanted: str, timeout: float = 30.0) -> None:
    async def reached() -> bool:
        return await phase(tab, wf) == wanted

    await eventually(reached, timeout=timeout, what=f"the page showing {wf} {wanted}")


async def confirm(tab: Tab, wf: str, control: str, *, reason: str = "") -> str:
    """Click a control, confirm it in the dialog, and return what the page says about it."""
    page = tab.page
    await page.locator(f'{card(tab, wf)} button[data-control="{control}"]').click()
    dialog = page.get_by_role("dialog")
    await dialog.wait_for(state="visible")
    if reason:
        await dialog.get_by_label("Reason").fill(reason)
    await dialog.locator("#confirm-yes").click()
    result = page.locator(f'{card(tab, wf)} [data-field="control-result"]')

    async def answered() -> bool:
        return await result.get_attribute("data-outcome") not in (None, "asking", "sending")

    await eventually(answered, what=f"the page saying what became of {control}")
    return await result.inner_text()


async def test_the_page_loads_with_no_console_errors(h: CIHarness, tab: Tab, wf: str) -> None:
    await deploy_served(h, wf)
    page = tab.page
    await page.goto("/")
    await wait_for_phase(tab, wf, "completed")
    updated = await page.locator("#updated").inner_text()

    async def refreshed() -> bool:
        return await page.locator("#updated").inner_text() != updated

    await eventually(refreshed, what="the page refreshing by itself")
    row = page.locator(f'{card(tab, wf)} tr[data-version="v1"]')
    assert await row.locator('[data-field="share"]').get_attribute("data-value") == "100"
    assert "live" in await row.locator('[data-field="state"]').inner_text()
    # Accessible basics: a language, one h1, a labelled token field, named buttons, headed table columns.
    assert await page.get_attribute("html", "lang") == "en"
    assert await page.locator("h1").count() == 1
    assert await page.get_by_label("Control token").is_visible()
    assert await page.get_by_role("button", name="Continue").count() >= 1
    assert await page.locator(f"{card(tab, wf)} table th[scope=col]").count() == 7
    assert tab.console_errors == [] and tab.page_errors == []
    assert tab.outside_requests == []


async def test_a_deploy_shows_the_new_version_and_its_percentage_rising(h: CIHarness, tab: Tab, wf: str) -> None:
    page = tab.page
    await deploy_served(h, wf)
    for i in range(24):  # running workflows for the migration to move
        await h.client.start_workflow(wf, {"i": i}, id=f"{wf}-{i}", task_queue=f"{wf}-v1")
    await page.goto("/")
    await wait_for_phase(tab, wf, "completed")
    steps = parse_steps("20@1s,40@1s,60@1s,100@1h")  # holds at 60 % until promoted, whatever the machine's speed
    await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=steps))
    share = f'{card(tab, wf)} tr[data-version="v2"] [data-field="share"]'
    seen: list[float] = []

    async def showing(wanted: float) -> bool:
        value = await number(tab, share)
        if value is not None and (not seen or value != seen[-1]):
            seen.append(value)
        return value == wanted

    async def migrating() -> bool:
        return await page.locator(f"{card(tab, wf)} progress").count() > 0

    await eventually(lambda: showing(60), timeout=60, what="the page showing v2 at 60 %")
    await eventually(migrating, what="the page showing the migration's progress")
    image = await page.screenshot(full_page=True)
    if SCREENSHOT:
        Path(SCREENSHOT).write_bytes(image)
    await ci.control(h.client, wf, "promote", "the page showed the held step")
    await eventually(lambda: showing(100), timeout=60, what="the page showing v2 at 100 %")
    assert seen == sorted(seen), f"the share only rises: {seen}"
    assert 60 in seen and seen[-1] == 100, seen
    assert await page.locator(f'{card(tab, wf)} svg[role="img"] circle').count() >= 4  # the chart's points
    await h.client.get_workflow_handle(ci_workflow_id(wf)).result()
    await wait_for_phase(tab, wf, "completed")
    assert tab.console_errors == [] and tab.page_errors == [] and tab.outside_requests == []


async def dark_deploy(h: CIHarness, tab: Tab, wf: str) -> None:
    await deploy_served(h, wf)
    await ci.deploy(h.client, h.task_queue, event(wf, "v2", isDarkDeploy=True), fast(steps=parse_steps("50@1s,100@1s")))
    await tab.page.goto("/")
    await wait_for_phase(tab, wf, "awaiting_continue")


async def test_continue_on_a_dark_deploy_starts_the_rollout(h: CIHarness, tab: Tab, wf: str) -> None:
    await dark_deploy(h, tab, wf)
    page = tab.page
    test_share = f'{card(tab, wf)} tr[data-version="v2"] [data-field="test-share"]'
    assert (await page.locator(test_share).inner_text()).startswith("100 %"), "test traffic goes to the dark version"
    await page.get_by_label("Control token").fill(TOKEN)
    said = await confirm(tab, wf, "continue", reason="checked by hand")
    assert "Continue accepted: continuing: the rollout starts" in said

    async def rolling() -> bool:
        return await phase(tab, wf) in ("rolling_out", "migrating", "completed") and bool(
            await number(tab, f'{card(tab, wf)} tr[data-version="v2"] [data-field="share"]')
        )

    await eventually(rolling, what="the page showing the rollout started")
    await h.client.get_workflow_handle(ci_workflow_id(wf)).result()
    await wait_for_phase(tab, wf, "completed")
    assert TOKEN not in await page.content(), "the token is never echoed into the page"
    assert tab.console_errors == [] and tab.page_errors == [] and tab.outside_requests == []


async def test_a_refused_control_shows_its_error(h: CIHarness, tab: Tab, wf: str) -> None:
    await dark_deploy(h, tab, wf)
    page = tab.page
    said = await confirm(tab, wf, "promote")
    assert "Promote not allowed" in said and "control token" in said  # no token yet: 401, said plainly
    await page.get_by_label("Control token").fill(TOKEN)
    said = await confirm(tab, wf, "promote")
    assert said == "✖ Promote refused: promote: the deployment of v2 is awaiting_continue, not rolling_out"
    assert await page.locator(f'{card(tab, wf)} [data-field="control-result"]').get_attribute("role") == "status"
    # Going back in the dialog sends nothing.
    await page.locator(f'{card(tab, wf)} button[data-control="abort"]').click()
    await page.get_by_role("dialog").get_by_role("button", name="Back").click()
    result = page.locator(f'{card(tab, wf)} [data-field="control-result"]')

    async def kept() -> bool:
        return await result.inner_text() == "Abort: not sent."

    await eventually(kept, what="the page saying abort was not sent")
    await page.wait_for_timeout(1500)
    assert await phase(tab, wf) == "awaiting_continue"
    assert TOKEN not in await page.content()
    assert [e for e in tab.console_errors if not REFUSED_FETCH.match(e)] == [] and tab.page_errors == []
    assert len(tab.console_errors) == 2  # Chromium's own log line of the 401 and of the 422
    await ci.control(h.client, wf, "cancel")


async def test_a_freeze_shows_in_the_banner_and_on_the_workflow_until_it_is_lifted(
    h: CIHarness, tab: Tab, wf: str
) -> None:
    page = tab.page
    await deploy_served(h, wf)
    queue = f"freeze-{uuid.uuid4()}"
    async with Worker(h.client, task_queue=queue, workflows=[FreezeWorkflow]):
        await set_freeze(h.client, queue, wf, datetime.now(UTC) + timedelta(hours=1), "incident 42")
        try:
            await page.goto("/")
            banner = page.locator(f'#freeze-list li[data-scope="{wf}"]')
            await banner.wait_for()
            assert await page.locator("#freezes").is_visible()
            assert re.fullmatch(rf"{wf} frozen until .+: incident 42", await banner.inner_text())
            on_card = page.locator(f'{card(tab, wf)} [data-field="frozen"]')
            await on_card.wait_for()
            assert (await on_card.inner_text()).endswith("incident 42")
        finally:
            await lift_freeze(h.client, wf)
        await on_card.wait_for(state="detached")
        await page.locator("#freezes").wait_for(state="hidden")
    assert tab.console_errors == [] and tab.page_errors == [] and tab.outside_requests == []


async def test_the_canary_cohort_shows_its_soak_on_the_migration(h: CIHarness, tab: Tab, wf: str) -> None:
    page = tab.page
    await deploy_served(h, wf)
    await start_old(h, wf, 3)
    canary = CanaryOptions(size=1, soak_s=3600)
    await ci.deploy(h.client, h.task_queue, event(wf, "v2"), fast(steps=parse_steps("100@0s"), canary=canary))
    await page.goto("/")
    soaking = page.locator(f'{card(tab, wf)} [data-field="canary"]').filter(has_text="Canary soak until")
    await soaking.wait_for()
    assert re.fullmatch(
        r"Canary soak until \d\d:\d\d:\d\d UTC: the cohort runs on the new version, the rest waits",
        await soaking.inner_text(),
    )
    await ci.control(h.client, wf, "abort")
    assert tab.console_errors == [] and tab.page_errors == [] and tab.outside_requests == []
