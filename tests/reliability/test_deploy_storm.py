"""A storm of 20 deploy commands for one workflow, sent 70 ms apart without waiting for each other's answer:
duplicates of the deployment in progress and of queued ones, and an older version (the one live before the storm:
a roll-back by redeploy, queued behind newer ones). First in, first out is checked against the order in which the CI
workflow received them (its history), which is the send order unless the network reorders them. The first
deployment (r2) holds at 50 % until the last command has its answer, then a human promotes it: whatever the
machine's speed, every command arrives while r2 is in progress, so the expected decisions are known.

The CI handles them first in, first out, recognises the duplicates, runs each accepted version once (rollout,
migration, retirement of the previous one), and ends with the last version at 100 %; every superseded version's
workers are stopped and its flags archived — but for the version the roll-back went back from, whose workflows stay
on it by design, with its flag and workers — and no worker of a version that is live, or queued to become live, is
stopped. Every version runs the sample's v2 code (so that a roll-back can take the workflows' state back)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from tests.reliability.harness import COUNT, Report, Scenario, fault_test, measurement, options, scenario

from diachronic.ci import client as ci
from diachronic.ci.contracts import DEPLOY_UPDATE, DeployAck, Phase
from diachronic.contracts import ci_workflow_id
from diachronic.flags.evaluation import general_percent

BUDGET_S = 300.0 + 3 * COUNT
pytestmark = fault_test(BUDGET_S)

STORM = ["r2", "r3", "r2", "r3", "r1", "r2", "r3", "r1", "r4", "r1"]
STORM += ["r2", "r4", "r3", "r1", "r4", "r2", "r3", "r4", "r1", "r5"]
# Sent in this order, the CI accepts r2, r3, r1 (the roll-back), r4, r5 and recognises 15 duplicates.
STAGGER_S = 0.07
FIRST_STEPS = "50@0.3s,100@1h"  # r2 holds at 50 % until promoted, after the storm
STEPS = "50@0.3s,100@0.3s"


async def arrival_order(sc: Scenario) -> list[str]:
    """The versions of the deploy updates in the order the CI workflow accepted them (its history)."""
    history = await sc.client.get_workflow_handle(ci_workflow_id("subscription")).fetch_history()
    order = []
    for event in history.events:
        if event.HasField("workflow_execution_update_accepted_event_attributes"):
            request = event.workflow_execution_update_accepted_event_attributes.accepted_request
            if request.input.name == DEPLOY_UPDATE:
                order.append(json.loads(request.input.args.payloads[0].data)["event"]["versionId"])
    return order


async def test_a_storm_of_20_deploys(tmp_path: Path, reliability_report: Report) -> None:
    async with scenario("deploy_storm", tmp_path, budget_s=BUDGET_S) as sc:
        versions = sorted(set(STORM))
        # Each version's worker runs before its deploy arrives.
        await sc.go_live("r1", {v: "v2" for v in versions}, trickle_every_s=2.0)
        first_uids = {v: life.uid for v, life in sc.watch.running().items()}

        # The first command starts the CI run; each later one leaves STAGGER_S after the previous one without
        # waiting for its answer (as concurrent webhooks and CLIs would), so the storm's span does not depend on
        # the machine's load.
        fault_start = sc.mark("fault_start")
        sent: list[float] = [0.0] * len(STORM)
        acks: list[DeployAck | None] = [None] * len(STORM)

        async def command(i: int, version: str, delay: float) -> None:
            await asyncio.sleep(delay)
            sent[i] = time.monotonic()
            acks[i] = await sc.deploy(version, options(FIRST_STEPS if version == "r2" else STEPS))

        await command(0, STORM[0], 0)
        await asyncio.gather(*(command(i, v, (i - 1) * STAGGER_S) for i, v in enumerate(STORM) if i))
        storm_s = max(sent) - sent[0]
        fault_end = sc.mark("fault_end")
        queued = await ci.status(sc.client, "subscription")  # r2 is still rolling out: the whole queue waits
        arrived = await arrival_order(sc)
        expected = list(dict.fromkeys(arrived))  # nothing finishes during the storm: each version's first command
        final = expected[-1]
        await sc.until(
            lambda s: s.phase is Phase.ROLLING_OUT and s.rollout_percent == 50,
            timeout=120,
            what="r2 to hold at 50 %",
        )
        await sc.control("promote", "reliability: the storm is over")

        result = await sc.ci_result(120 + 3 * COUNT)
        # A redeploy of r1 (live before the storm) is a roll-back: the workflows of the version it goes back from
        # stay on it by design (docs/gates.md), so that version keeps its flag and its workers.
        kept = sorted(
            {
                d["fromVersion"]["versionId"]
                for d in result["deployments"]
                if d["gates"]["redeployRollback"] and not d["gates"]["movesBack"]
            }
            - {final}
        )
        verdict = await sc.verdict(result, final, kept)
        decisions = [a.decision if a else None for a in acks]
        accepted = [v for v, a in zip(STORM, acks, strict=True) if a is not None and a.position is not None]
        ran = [d["toVersion"]["versionId"] for d in result["deployments"]]
        flags = await sc.flags.list_version_flags("subscription", include_archived=True)
        live_flags = [f for f in flags if not f.archived]
        stopped = sorted(sc.watch.stopped())
        running = sorted(sc.watch.running())
        reliability_report.add(
            measurement(
                sc,
                verdict,
                fault="20 deploy commands for one workflow, 70 ms apart (duplicates, an older version)",
                what_happened=(
                    f"20 commands in {storm_s:.2f} s: {len(accepted)} accepted {expected} (in the order received), "
                    f"{len(acks) - len(accepted)} recognised as duplicates; ran {ran} in that order, each "
                    f"{sorted({d['phase'] for d in result['deployments']})}; final "
                    f"{[(f.info.version_id, general_percent(f)) for f in live_flags]}; "
                    f"{len(flags) - len(live_flags)} flags archived; workers stopped {stopped}, running {running}"
                ),
                fault_s=fault_end - fault_start,
                recover_s=None,
                recovered_when="(no outage: the queue drains)",
                complete_s=sc.marks["completed"] - fault_end,
                outcome=f"{len(ran)} deployments, last {ran[-1] if ran else None}",
                arrival_order=arrived,
                arrived_as_sent=arrived == STORM,
                storm_s=round(storm_s, 2),
                accepted=accepted,
                ran=ran,
                duplicates=len(acks) - len(accepted),
            )
        )
        assert sorted(arrived) == sorted(STORM), arrived
        assert sorted(accepted) == sorted(expected) and len(accepted) == len(set(STORM)), decisions
        assert queued.to_version is not None and queued.to_version.version_id == expected[0]
        assert [e.version_id for e in queued.queued] == expected[1:]
        assert ran == expected, (ran, arrived)  # first in, first out, in the order the CI received them
        assert all(d["phase"] == "completed" for d in result["deployments"]), result["deployments"]
        verdict.assert_nothing_lost()
        assert kept == [ran[ran.index("r1") - 1]], (kept, ran)  # r2 runs first: r1 always goes back from one
        assert (live_flags[0].info.version_id, general_percent(live_flags[0])) == (final, 100)  # the newest
        assert sorted(f.info.version_id for f in live_flags) == sorted([final, *kept])
        # Every other flag is archived: one per deployment that ran, and r1's from before the storm (superseded
        # whatever the order; when r1 arrives last, its redeploy is a new flag of the same version).
        assert len(flags) == len(ran) + 1
        assert {f.info.version_id for f in flags if f.archived} == (set(versions) - {final, *kept}) | {"r1"}
        assert stopped == sorted(set(versions) - {final, *kept}), stopped
        assert running == sorted([final, *kept]) and sc.watch.running()[final].uid == first_uids[final]
