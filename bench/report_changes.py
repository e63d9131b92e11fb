"""The report's sections on single-user changes and on the runs that check rather than time: queue events per
second, the state's cost per change, SCIM provisioning (``bench_queue``, ``bench_state``, ``bench_scim``), the chaos
scenarios and the line of security checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from report_format import Results, key_values, number, ratio, table, verdict


def queue(data: Results) -> list[str]:
    by_batch: dict[int, dict[bool, float]] = {}
    for run in data["eventsPerSecond"]:
        by_batch.setdefault(int(run["batch"]), {})[bool(run["stateBucket"])] = float(run["eventsPerSecond"])
    rows = []
    for batch, rates in sorted(by_batch.items()):
        without, with_state = rates.get(False), rates.get(True)
        rows.append(
            [
                f"batches of {batch}",
                number(without) if without is not None else "not run",
                number(with_state) if with_state is not None else "not run",
                ratio(with_state / without) if without and with_state is not None else "—",
            ]
        )
    return table(["events/s", "no state bucket (FC default)", "shadow state in S3 (moto)", "with / without"], rows)


STATE_FLAT = 1.10  # a single-user change's state requests at the largest directory, at most this times the smallest's


def state(data: Results) -> list[str]:
    """bench_state: one single-user change's cost to the shadow state against the directory's size, before (the
    whole snapshot down and up per run) and after (the journal), and the batch path's checkout with entries pending."""
    before = {row["users"]: row for row in (data.get("before") or {}).get("perChange", [])}
    rows = []
    for row in data["perChange"]:
        old = before.get(row["users"])
        rows.append(
            [
                number(row["users"], 0),
                f"{number(old['eventsPerSecond'])} → {number(row['eventsPerSecond'])}"
                if old
                else number(row["eventsPerSecond"]),
                f"{number(old['requestsPerChange'])} → {number(row['requestsPerChange'])}"
                if old
                else number(row["requestsPerChange"]),
                f"{number(old['bytesInPerChange'], 0)} → {number(row['bytesInPerChange'], 0)}"
                if old
                else number(row["bytesInPerChange"], 0),
                f"{number(old['concurrent']['eventsPerSecond'])} → {number(row['concurrent']['eventsPerSecond'])}"
                if old
                else number(row["concurrent"]["eventsPerSecond"]),
                number(row["concurrent"]["failed"], 0),
            ]
        )
    requests = [row["requestsPerChange"] for row in data["perChange"]]
    flat = max(requests) <= STATE_FLAT * min(requests) if requests and min(requests) else None
    lines = [
        "Single-user changes through the queue's writer, the state in moto's S3, before (the whole snapshot per run) "
        f"→ after (the journal, `engine.views`). Requests per change flat from the smallest directory to the largest "
        f"(≤ {STATE_FLAT:g}×): {verdict(flat)}",
        "",
        *table(
            ["users", "events/s", "state requests / change", "bytes down / change", "4 writers events/s", "lost"],
            rows,
        ),
    ]
    pending = data.get("checkoutWithPending") or []
    if pending:
        lines += [
            "",
            "The batch path's checkout with journal entries pending (folded in, one GET each):",
            "",
            *table(
                ["entries pending", "seconds", "requests", "bytes down"],
                [
                    [number(r["pending"], 0), number(r["seconds"]), number(r["requests"], 0), number(r["bytesIn"], 0)]
                    for r in pending
                ],
            ),
        ]
    return lines


def scenarios(data: Results) -> list[str]:
    runs = data["scenarios"]
    passed = sum(1 for s in runs if s.get("passed"))
    rows = [
        [
            s["name"],
            number(s["users"], 0) if isinstance(s.get("users"), (int, float)) else "—",
            "passed ✅" if s.get("passed") else "FAILED ❌",
            number(s["seconds"]) if isinstance(s.get("seconds"), (int, float)) else "—",
            key_values(s.get("figures")),
        ]
        for s in runs
    ]
    return [
        f"{passed} of {len(runs)} scenarios passed.",
        "",
        *table(["scenario", "users", "result", "seconds", "figures"], rows),
    ]


SCIM_FLAT = 1.10  # a SCIM request's object-store requests at the largest directory, at most this times the smallest's


def scim_provisioning(data: Results) -> list[str]:
    """bench_scim: an IdP's initial provisioning under faults (rates, latency per kind, the check of what CVC, the
    SCIM store and the state hold), then one SCIM request's object-store cost against the directory's size."""
    params, done, checked = data["params"], data["provisioning"], data["check"]
    create, patch = done["passes"]["create"], done["passes"]["patch"]
    rows = [
        [kind, number(row["count"], 0), number(row["p50Ms"]), number(row["p99Ms"]), key_values(row["statuses"])]
        for kind, row in done["requests"].items()
    ]
    wrong = {name: count for name, count in checked["mismatches"].items() if count}
    failed = checked["failedWrites"]
    lines = [
        f"{number(params['users'], 0)} users provisioned by {params['clients']} clients at once through `cvcsync "
        f"serve` (per user Entra ID's probe `GET /Users?filter=userName eq …`, then `POST`; then PATCHes: "
        f"{params['deactivated']} deactivated, {params['updated']} updated); the emulator faulting "
        f"({key_values(params['faults'])}, {params['cvcMaxAttempts']} attempts per CVC call), the state in moto's S3; "
        f"429 and 5xx retried as an IdP does. Create pass: {number(create['usersPerSecond'])} users/s, "
        f"{number(create['requestsPerSecond'])} requests/s; PATCH pass: {number(patch['requestsPerSecond'])} "
        "requests/s.",
        "",
        *table(["request", "count", "p50 ms", "p99 ms", "answers"], rows),
        "",
    ]
    if done.get("createsPerSecondByTenth"):
        lines += [
            "Creates per second in each tenth of the create pass (moto lists a prefix by scanning the whole bucket, "
            f"which fills as the pass goes; S3 does not): {', '.join(map(number, done['createsPerSecondByTenth']))}.",
            "",
        ]
    lines += [
        f"**Check: {'passed ✅' if checked['passed'] else 'FAILED ❌'}.** CVC holds {number(checked['cvcUsers'], 0)} "
        f"users ({number(checked['expectedInCvc'], 0)} sent active), SCIM serves {number(checked['scimUsers'], 0)}, "
        f"the state holds {number(checked['stateUsers'], 0)}; {number(checked['reports'], 0)} run reports "
        f"({key_values(checked['reportOutcomes'])}); {failed['answers']} failed writes, "
        f"{'some given up' if wrong.get('gaveUp') else 'each retried to success'}, "
        f"{failed['withReport']} with their run's report ({key_values(failed['outcomes'])}); creates answered with "
        f"an error yet stored: {done.get('foundAfterError', '—')}; mismatches: "
        f"{key_values(wrong) if wrong else 'none'}.",
    ]
    costs = data.get("costPerRequest") or []
    if not costs:
        return lines
    cost_rows = []
    for kind in costs[0]["perRequest"]:
        found = [row["perRequest"][kind] for row in costs if kind in row["perRequest"]]
        counts = [cost["requests"] for cost in found]
        flat = max(counts) <= SCIM_FLAT * min(counts) if counts and min(counts) else None
        cost_rows.append([kind, *(_scim_cost(row["perRequest"].get(kind)) for row in costs), verdict(flat)])
    largest = costs[-1]
    create_cost = largest["perRequest"].get("create") or {}
    return [
        *lines,
        "",
        "One request at a time against a state seeded with N users; every S3 request counted by a proxy in front of "
        f"moto (what S3 bills): requests (bytes down / up) per SCIM request. Target: flat, at most {SCIM_FLAT:g}× "
        "from the smallest directory to the largest.",
        "",
        *table(["per request", *(f"{number(row['users'], 0)} users" for row in costs), "flat"], cost_rows),
        "",
        f"A create at {number(largest['users'], 0)} users, by kind: {key_values(create_cost.get('byKind'))}; by "
        f"area: {key_values(create_cost.get('byArea'))}.",
    ]


def _scim_cost(cost: Mapping[str, Any] | None) -> str:
    if cost is None:
        return "—"
    return f"{number(cost['requests'])} ({number(cost['bytesIn'], 0)} B / {number(cost['bytesOut'], 0)} B)"


def security_line(data: Results | None, problem: str | None) -> str:
    if problem:
        return f"**Security checks:** {problem}."
    if data is None:
        return "**Security checks:** not run."
    runs = data["scenarios"]
    passed = sum(1 for s in runs if s.get("passed"))
    checks = "; ".join(
        f"{s['name']} {'✅' if s.get('passed') else '❌'}"
        + (f" ({key_values(s['figures'])})" if s.get("figures") else "")
        for s in runs
    )
    return f"**Security checks:** {passed} of {len(runs)} passed ({data.get('generatedAt', 'time unknown')}): {checks}."
