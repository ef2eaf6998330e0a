"""The explorer: a generative search for counter-examples to the safety invariants.

Each story (``diachronic.simulation.actions``) is drawn from a seed by ``generate``: a starting world, then deploys
of new and older versions (migratory, some with a canary cohort, non-migratory, dark; some with a gate that passes
or fails, some whose workers come up late or never), re-sent events, controls and roll-backs (at once or stepped), a
person's edits (also between the automation's read and its write), workers coming up and going away, a version
breaking (its health evidence fires a rule: the automatic abort), workflows starting and ending, failure bursts
(the flag store down or forbidden, Kubernetes 403 / 503, Temporal busy), waits, and continue-as-new at tiny
thresholds. ``explore`` plays
stories one after the other on the real CI workflows (``diachronic.simulation.stories``; each on a fresh
time-skipping server) until its budget is spent; the referee judges every step. A story that broke an invariant is
shrunk (``shrink``: drop chunks of actions, then simplify the start and each action, keeping the same broken
invariant) and printed as a catalog scenario (``Finding.python``).

Seeded random walks, not hypothesis's ``RuleBasedStateMachine``: a step is a round trip to a Temporal server in
virtual time, whose budget is best counted in seconds, not examples; a story must replay exactly from its seed
alone (``make explore SEED=…``); and the shrunk story must print as a scenario, which plain data makes easy.
"""

from __future__ import annotations

import dataclasses
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from diachronic.ci.contracts import HealthRule, Phase
from diachronic.simulation import actions as act
from diachronic.simulation.actions import Action, Start, Story, python_literal
from diachronic.simulation.model import run_model
from diachronic.simulation.referee import Violation
from diachronic.simulation.runner import Scenario, run_scenario
from diachronic.simulation.stories import WatchedWorld, explored

__all__ = ["Finding", "Mix", "Summary", "Trial", "explore", "generate", "play", "play_model", "shrink"]

T = TypeVar("T")

STEPS = ("25@60s,50@60s,75@60s,100@60s", "50@30s,100@30s", "10@20s,100@40s", "20@60s,40@1h,100@1h")
POLLS_S = (20.0, 60.0)
PERCENTS = (0, 10, 30, 50, 70, 100)
WAITS_S = (10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
CONTROLS = ("continue", "cancel", "pause", "resume", "promote", "abort")
CONTROL_WEIGHTS = (3.0, 1.0, 2.0, 2.0, 2.0, 1.0)
KINDS: tuple[act.DeployKind, ...] = ("migratory", "non-migratory", "dark")
CANARY_SIZES = (1, 2)
WORKERS: tuple[act.Workers, ...] = ("up", "late", "never")
ROLLBACK_STEPS = (None, "50@30s,100@30s")
TINY_HISTORY = 10  # events: the smallest continue-as-new threshold the contracts allow
ABOUT_WIDTH = 96  # characters of a printed scenario's description per line


@dataclass(frozen=True)
class Mix:
    """How often each kind of action is drawn (relative weights), and how long stories are. A test narrows it to
    the actions a defect needs; ``make explore`` uses the default."""

    deploy: float = 5.0
    resend: float = 0.7
    control: float = 3.0
    set_percent: float = 1.2
    race_write: float = 1.5
    disable_general: float = 0.6
    archive: float = 0.3
    start_workflows: float = 1.2
    finish_workflows: float = 1.5
    fail: float = 2.0
    wait: float = 4.0
    workers_up: float = 1.0  # a version's workers come up (mostly one deployed with late workers)
    workers_down: float = 0.3
    break_version: float = 0.8
    rollback: float = 0.8
    length: tuple[int, int] = (4, 12)
    tiny_history: float = 0.3  # share of stories whose CI and children continue as new at tiny thresholds
    kinds: tuple[float, float, float] = (5.0, 3.0, 2.0)  # deploys: migratory, non-migratory, dark
    canary: float = 0.3  # share of migratory deploys that migrate a canary cohort first
    workers: tuple[float, float, float] = (8.0, 1.5, 0.5)  # deploys whose workers come up: with it, late, never
    gate: float = 0.25  # share of deploys with a gate workflow (``--gate``)
    gate_fails: float = 0.3  # share of gates that fail
    gate_every_step: float = 0.3  # share of passing gates run before every step
    failures: tuple[act.Failure, ...] = tuple(act.FAILURES)  # the incidents a ``Fail`` draws from

    @classmethod
    def only(cls, **weights: Any) -> Mix:
        """Only the actions named (with their weights), no tiny histories, gates or late workers unless asked: what
        a defect needs."""
        none: dict[str, Any] = {f.name: 0.0 for f in dataclasses.fields(cls) if f.type == "float"}
        return cls(**(none | {"workers": (1.0, 0.0, 0.0)} | weights))


def _pick(rng: random.Random, choices: Iterable[T], weights: Iterable[float] | None = None) -> T:
    items = list(choices)
    return rng.choices(items, weights=list(weights) if weights is not None else None)[0]


@dataclass
class _Draw:
    """What the generator remembers while drawing one story: the versions it knows of, newest last."""

    rng: random.Random
    mix: Mix
    known: list[str]
    deployed: list[str] = field(default_factory=list)
    late: list[str] = field(default_factory=list)  # versions deployed without their workers up

    def new_version(self) -> str:
        return f"v{len(self.known) + 1}"

    def recent(self) -> str:
        """A version a person would touch: mostly the one deployed last."""
        if self.deployed and self.rng.random() < 0.7:
            return self.deployed[-1]
        return _pick(self.rng, self.known) if self.known else "v1"

    def older(self) -> str:
        """A version a person would finish workflows of: mostly the one before the last deploy."""
        if len(self.known) > 1 and self.rng.random() < 0.7:
            return self.known[-2]
        return self.recent()

    def deploy(self) -> act.Deploy:
        rng = self.rng
        if not self.known or rng.random() < (0.55 if self.deployed else 0.9):
            version = self.new_version()
            self.known.append(version)
        else:
            version = _pick(rng, self.known)
        self.deployed.append(version)
        kind = _pick(rng, KINDS, self.mix.kinds)
        steps, poll_s, batch_size = _pick(rng, STEPS, (5, 4, 4, 1)), _pick(rng, POLLS_S), _pick(rng, (None, 2))
        canary = None
        if self.mix.canary and kind == "migratory" and rng.random() < self.mix.canary:
            canary = _pick(rng, CANARY_SIZES)
        workers: act.Workers = _pick(rng, WORKERS, self.mix.workers) if any(self.mix.workers[1:]) else "up"
        if workers != "up":
            self.late.append(version)
        verdict: act.GateVerdict | None = None
        every_step = False
        if self.mix.gate and rng.random() < self.mix.gate:
            verdict = "fail" if rng.random() < self.mix.gate_fails else "pass"
            every_step = verdict == "pass" and rng.random() < self.mix.gate_every_step
        return act.Deploy(
            version,
            kind=kind,
            steps=steps,
            poll_s=poll_s,
            batch_size=batch_size,
            canary=canary,
            workers=workers,
            gate=verdict,
            gate_every_step=every_step,
        )

    def workers_up(self) -> act.WorkersUp:
        """Mostly the workers of a version deployed without them, else of a version a person would touch."""
        if self.late and self.rng.random() < 0.8:
            return act.WorkersUp(self.late.pop(0))
        return act.WorkersUp(self.recent())

    def fail(self) -> act.Fail:
        failure: act.Failure = _pick(self.rng, self.mix.failures)
        _, retryable, activities = act.FAILURES[failure]
        return act.Fail(failure, _pick(self.rng, activities), self.rng.randint(1, 6) if retryable else 1)


def generate(rng: random.Random, mix: Mix = Mix()) -> Story:
    """One story: a start, a first deploy, then actions drawn by ``mix``."""
    live = ("v1",) if rng.random() > 0.1 else ()
    running = _pick(rng, (0, 2, 3, 5), (1, 2, 2, 1)) if live else 0
    tiny = rng.random() < mix.tiny_history
    start = Start(
        live=live,
        running=running,
        finishing=rng.randint(0, running),
        ci_history=TINY_HISTORY if tiny else None,
        child_history=_pick(rng, (TINY_HISTORY, 40)) if tiny and rng.random() < 0.7 else None,
    )
    draw = _Draw(rng, mix, list(live))
    makers: dict[str, Callable[[], Action]] = {
        "deploy": draw.deploy,
        "resend": lambda: act.Resend(draw.recent()),
        "control": lambda: act.Control(
            name := _pick(rng, CONTROLS, CONTROL_WEIGHTS),
            via_signal=name in ("continue", "cancel") and rng.random() < 0.3,
        ),
        "set_percent": lambda: act.SetPercent(draw.recent(), _pick(rng, PERCENTS)),
        "race_write": lambda: act.RaceWrite(draw.recent(), _pick(rng, PERCENTS)),
        "disable_general": lambda: act.DisableGeneral(draw.recent(), delete=rng.random() < 0.4),
        "archive": lambda: act.Archive(draw.recent()),
        "start_workflows": lambda: act.StartWorkflows(
            rng.randint(1, 3),
            version=draw.recent() if rng.random() < 0.3 else None,
            lifetime=_pick(rng, (None, 2, 5)),
        ),
        "finish_workflows": lambda: act.FinishWorkflows(draw.older(), count=_pick(rng, (None, 1, 2))),
        "fail": draw.fail,
        "wait": lambda: act.Wait(_pick(rng, WAITS_S)),
        "workers_up": draw.workers_up,
        "workers_down": lambda: act.WorkersDown(draw.recent()),
        "break_version": lambda: act.Break(draw.recent(), _pick(rng, HealthRule)),
        "rollback": lambda: act.Rollback(_pick(rng, ROLLBACK_STEPS)),
    }
    weights = {name: getattr(mix, name) for name in makers}
    actions: list[Action] = [draw.deploy()]
    for _ in range(rng.randint(*mix.length) - 1):
        kind = _pick(rng, weights, weights.values())
        actions.append(makers[kind]())
    return Story(start, tuple(actions))


# ----------------------------------------------------------------------------------------------- playing


@dataclass
class Trial:
    """One story played: the invariants it broke, and what else the summary reports."""

    story: Story
    name: str
    violations: list[Violation]
    played: int
    phases: list[Phase]
    retried: str | None = None  # the first play hung (a test-server stall) and the second did not
    inconclusive: str | None = None  # it could not be judged: why (a flaw of the test server)
    wall_s: float = 0.0
    ci_failed: bool = False  # the CI run ended failed


async def play_model(story: Story, name: str, *, scenario: Callable[[Scenario], Scenario] | None = None) -> Trial:
    """Play one story against the model of the CI (``diachronic.simulation.model``: the planner alone), in a few
    milliseconds; of what ``scenario`` adjusts, the model keeps the world's class."""
    began = time.monotonic()
    built = explored(name, "explored", story.start, story.actions)
    world_type = (scenario(built) if scenario else built).world
    run = run_model(story, f"{name}-s0", world_type=world_type)  # the name it gets on the workflows: same routing
    return Trial(
        story, name, run.violations, run.played, run.phases, wall_s=time.monotonic() - began, ci_failed=run.ci_failed
    )


async def play(story: Story, name: str, *, scenario: Callable[[Scenario], Scenario] | None = None) -> Trial:
    """Play one story on a fresh server (once more if it hangs); a second hang is the ``run-did-not-end`` violation.

    ``scenario`` may adjust the scenario before it runs (tests use it to re-introduce an old behaviour). A story
    without a deploy never starts a CI: nothing to play (a shrinking step may propose one)."""
    if not any(isinstance(a, act.Deploy) for a in story.actions):
        return Trial(story, name, [], 0, [])
    built = explored(name, "explored", story.start, story.actions)
    outcome = await run_scenario(scenario(built) if scenario else built)
    world = outcome.world
    if not isinstance(world, WatchedWorld):
        raise TypeError("a story's world must be a WatchedWorld")
    violations = [] if world.inconclusive else list(world.referee.violations)  # a stuck CI breaks everything after
    if outcome.hang and not world.inconclusive:
        violations.append(Violation("run-did-not-end", f"hung twice: {outcome.hang}"))
    retried = None if outcome.hang else outcome.retried  # hung twice: a violation (or a flaw), not a stall
    return Trial(
        story,
        name,
        violations,
        world.played,
        outcome.phases,
        retried,
        world.inconclusive,
        outcome.wall_s,
        ci_failed=outcome.ci_error is not None,
    )


Player = Callable[..., Awaitable[Trial]]
"""``play`` (the workflows) or ``play_model`` (the planner alone): ``(story, name, *, scenario) -> Trial``."""


# ----------------------------------------------------------------------------------------------- shrinking


def _simpler(value: Any) -> list[Any]:
    """Simpler variants of a start or an action: each field back to its default, waits and counts smaller."""
    variants: list[Any] = []
    for f in dataclasses.fields(value):
        current = getattr(value, f.name)
        if f.default is not dataclasses.MISSING and current != f.default:
            variants.append(dataclasses.replace(value, **{f.name: f.default}))
        if isinstance(current, int | float) and not isinstance(current, bool) and current > 1:
            smaller = type(current)(current // 2) if isinstance(current, int) else current / 2
            if f.name in ("seconds", "count", "running", "finishing") and smaller != f.default:
                variants.append(dataclasses.replace(value, **{f.name: smaller}))
    if isinstance(value, Start):  # ``finishing`` never exceeds ``running``
        variants = [dataclasses.replace(v, finishing=min(v.finishing, v.running)) for v in variants]
    return list(dict.fromkeys(v for v in variants if v != value))


async def shrink(story: Story, still_fails: Callable[[Story], Awaitable[bool]], *, max_runs: int) -> tuple[Story, int]:
    """A smaller story that still fails, within ``max_runs`` plays: chunks of actions dropped (halves, quarters, …,
    single actions), then the start and each action simplified. Returns it and the plays spent."""
    runs = 0

    async def fails(candidate: Story) -> bool:
        nonlocal runs
        runs += 1
        return await still_fails(candidate)

    best = story
    chunk = max(1, len(best.actions) // 2)
    while runs < max_runs and best.actions:
        for at in range(0, len(best.actions), chunk):
            candidate = Story(best.start, best.actions[:at] + best.actions[at + chunk :])
            if runs >= max_runs:
                break
            if await fails(candidate):
                best = candidate
                break
        else:
            if chunk == 1:
                break
            chunk = max(1, chunk // 2)
    for variant in _simpler(best.start):
        if runs < max_runs and await fails(Story(variant, best.actions)):
            best = Story(variant, best.actions)
    index = 0
    while index < len(best.actions) and runs < max_runs:
        for variant in _simpler(best.actions[index]):
            candidate = Story(best.start, (*best.actions[:index], variant, *best.actions[index + 1 :]))
            if runs < max_runs and await fails(candidate):
                best = candidate
                break
        else:
            index += 1
    return best, runs


# ----------------------------------------------------------------------------------------------- findings


@dataclass
class Finding:
    """A story that broke an invariant, as found and as shrunk."""

    invariant: str
    found: Trial
    shrunk: Trial | None = None
    shrink_runs: int = 0
    confirmed: bool | None = None  # found by the model: whether the workflows break the invariant too (None: n/a)

    @property
    def best(self) -> Trial:
        return self.shrunk or self.found

    def about(self) -> str:
        violation = next(v for v in self.best.violations if v.invariant == self.invariant)
        message = re.sub(rf"\b{re.escape(self.best.name)}-s0\b", "<wf>", violation.message)
        return f"found by the explorer: {violation.invariant}: {message}"

    def python(self) -> str:
        """The shrunk story as a catalog scenario to paste into ``simulation/scenarios.py``."""
        trial = self.best
        variable = re.sub(r"\W", "_", trial.name).upper()
        actions = "".join(f"        {python_literal(a)},\n" for a in trial.story.actions)
        about = "".join(f"        {python_literal(line)}\n" for line in _lines(self.about(), ABOUT_WIDTH))
        model_only = "# found by the model of the CI only: the workflows did not break it (a shortcut of the model?)\n"
        return (
            (model_only if self.confirmed is False else "")
            + "# phases (and ci_fails): as the failing run ended; check them against the fixed behaviour\n"
            f"{variable} = explored(\n"
            f"    {python_literal(trial.name)},\n"
            f"    (\n{about}    ),\n"
            f"    {python_literal(trial.story.start)},\n"
            f"    [\n{actions}    ],\n"
            f"    phases={python_literal(tuple(trial.phases))},\n"
            + ("    ci_fails=True,\n" if trial.ci_failed else "")
            + ")\n"
        )


def _lines(text: str, width: int) -> list[str]:
    """``text`` cut at spaces into pieces of at most ``width`` characters (a longer word stays whole), the space
    kept at the end of each piece so that the pieces concatenate back to ``text``."""
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + len(word) + 1 > width:
            lines.append(line + " ")
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line]


@dataclass
class Summary:
    """What an exploration did and found."""

    seed: int
    trials: int = 0
    steps: int = 0
    violations: int = 0
    retried: list[str] = field(default_factory=list)  # stories whose first play stalled, with why
    inconclusive: list[str] = field(default_factory=list)  # stories the test server could not play, with why
    findings: list[Finding] = field(default_factory=list)  # the first story breaking each invariant
    wall_s: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.findings

    def line(self) -> str:
        line = f"{self.trials} sequences, {self.steps} steps, {self.violations} violations"
        line += f", {len(self.retried)} retried after a test-server stall" if self.retried else ""
        return line + (f", {len(self.inconclusive)} inconclusive (test-server flaw)" if self.inconclusive else "")

    def as_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "sequences": self.trials,
            "steps": self.steps,
            "violations": self.violations,
            "retried": self.retried,
            "inconclusive": self.inconclusive,
            "wall_s": round(self.wall_s, 1),
            "findings": [
                {
                    "invariant": f.invariant,
                    "sequence": f.found.name,
                    "actions": len(f.found.story),
                    "shrunk_actions": len(f.best.story),
                    "violations": [str(v) for v in f.best.violations],
                    "scenario": f.python(),
                }
                for f in self.findings
            ],
        }


async def explore(
    *,
    seed: int = 0,
    budget_s: float | None = None,
    sequences: int | None = None,
    mix: Mix = Mix(),
    shrink_runs: int = 40,
    stop_on_violation: bool = False,
    model: bool = False,
    scenario: Callable[[Scenario], Scenario] | None = None,
    on_trial: Callable[[Trial], None] | None = None,
) -> Summary:
    """Play stories drawn from ``seed`` until ``sequences`` were played or ``budget_s`` wall seconds passed (at least
    one bound is needed; ``stop_on_violation``: or a story broke an invariant), then shrink the first story breaking
    each invariant (``shrink_runs`` plays each, 0: keep it as found).

    ``model``: play the stories against the model of the CI (the planner alone, thousands of times faster), shrink
    there, then play each shrunk counter-example on the real workflows: the finding is ``confirmed`` or not."""
    if budget_s is None and sequences is None:
        raise ValueError("give the exploration a budget: seconds, sequences, or both")
    summary = Summary(seed)
    player = play_model if model else play
    began = time.monotonic()
    while (
        (sequences is None or summary.trials < sequences)
        and (budget_s is None or time.monotonic() - began < budget_s)
        and not (stop_on_violation and summary.findings)
    ):
        story = generate(random.Random(f"{seed}:{summary.trials}"), mix)
        trial = await player(story, f"explore-{seed}-{summary.trials}", scenario=scenario)
        summary.trials += 1
        summary.steps += trial.played
        summary.violations += len(trial.violations)
        if trial.retried:
            summary.retried.append(f"{trial.name}: {trial.retried}")
        if trial.inconclusive:
            summary.inconclusive.append(f"{trial.name}: {trial.inconclusive}")
        known = {f.invariant for f in summary.findings}
        summary.findings += [
            Finding(i, trial) for i in dict.fromkeys(v.invariant for v in trial.violations) if i not in known
        ]
        if on_trial is not None:
            on_trial(trial)
    for finding in summary.findings:
        if shrink_runs:
            await _shrink(finding, shrink_runs, player, scenario)
        if model:
            await _confirm(finding, scenario)
    summary.wall_s = time.monotonic() - began
    return summary


async def _confirm(finding: Finding, scenario: Callable[[Scenario], Scenario] | None) -> None:
    """Play a model's counter-example on the real workflows, shrunk, else as found (timings differ between the two:
    the shrunk story may depend on the model's)."""
    for trial in [finding.best] if finding.best is finding.found else [finding.best, finding.found]:
        played = await play(trial.story, trial.name, scenario=scenario)
        if any(v.invariant == finding.invariant for v in played.violations):
            finding.confirmed, finding.shrunk = True, played  # printed with the real workflows' phases
            return
    finding.confirmed = False


async def _shrink(
    finding: Finding, max_runs: int, player: Player, scenario: Callable[[Scenario], Scenario] | None
) -> None:
    name = finding.found.name  # routing depends on workflow ids, which depend on this name: keep it
    last: dict[str, Trial] = {}

    async def still_fails(candidate: Story) -> bool:
        trial = await player(candidate, name, scenario=scenario)
        last["trial"] = trial
        fails = any(v.invariant == finding.invariant for v in trial.violations)
        if fails:
            last["failing"] = trial
        return fails

    story, finding.shrink_runs = await shrink(finding.found.story, still_fails, max_runs=max_runs)
    if story != finding.found.story and "failing" in last and last["failing"].story == story:
        finding.shrunk = last["failing"]
