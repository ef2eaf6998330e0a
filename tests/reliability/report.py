"""Render the fault-injection suite's measurements as the Markdown table of docs/reliability.md.

python -m tests.reliability.report [.diachronic/reliability.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ORDER = [
    "ci_worker_sigkill",
    "temporal_sigterm",
    "temporal_sigkill",
    "flag_store_sqlite_lock",
    "flag_store_unleash_stopped",
    "kubernetes_503",
    "kubernetes_403",
    "deploy_storm",
    "secrets",
]


def _s(value: Any) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(data: dict[str, Any]) -> str:
    rows = data.get("rows", {})
    keys = [k for k in ORDER if k in rows] + sorted(k for k in rows if k not in ORDER)
    lines = [
        f"Measured {data.get('generated_at', '?')} on {data.get('machine', '?')}; "
        f"{data.get('workflows_per_test', '?')} old workflows per test, plus those the signaler started during the "
        f"deployment; suite wall time {_s(data.get('suite_wall_s'))} s.",
        "",
        "| fault | what the system did | workflows | lost | double signals | live workers stopped | secrets found "
        "| fault lasted (s) | seconds to recover | fault end → deployment done (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in keys:
        r = rows[key]
        recover = _s(r.get("recover_s"))
        if r.get("recover_s") is not None and r.get("recovered_when"):
            recover += f" ({r['recovered_when']})"
        lines.append(
            "| "
            + " | ".join(
                [
                    _cell(r["fault"]),
                    _cell(f"{r['what_happened']}; outcome: {r['outcome']}"),
                    _s(r.get("workflows")),
                    _s(r.get("lost")),
                    _s(r.get("double_signals")),
                    _s(r.get("live_workers_stopped")),
                    _s(r.get("secret_occurrences")),
                    _s(r.get("fault_s")),
                    _cell(recover),
                    _s(r.get("complete_after_fault_s")),
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else ".diachronic/reliability.json")
    print(render(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
