"""The report's sections on fixed costs against the official SDK: a cold start per handler (against its floor too,
and where the import time goes) and the per-call client overhead (``bench_cold_start``, ``bench_client``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from report_format import NO_TARGET, Results, key_values, number, ratio, table, verdict


def cold_start(data: Results) -> list[str]:
    sdk = data["sdk"]
    rows, splits = [], []
    for handler in data["handlers"]:
        better = sdk["ms"] / handler["ms"]
        cpu = f"{number(handler['cpuMs'])} / {number(sdk['cpuMs'])}" if "cpuMs" in handler and "cpuMs" in sdk else "—"
        rows.append(
            [
                f"`{handler['name']}`",
                handler["event"],
                number(handler["ms"]),
                number(sdk["ms"]),
                ratio(better),
                cpu,
                "yes" if handler.get("boto3Imported") else "no",
                "≤ official SDK (ratio ≥ 1)",
                verdict(handler["ms"] <= sdk["ms"]),
            ]
        )
        splits.append((handler["name"], handler.get("importSplitMs") or {}))
    lines = [
        f"Fresh interpreter with an empty TMPDIR: import the handler and handle one event, median of {data['runs']} "
        f"runs per side, interleaved. Official SDK: {sdk.get('what', 'import + one CreateUser call')}.",
        "",
        *table(
            [
                "handler",
                "event",
                "cvc-sync ms",
                "official SDK ms",
                "ratio",
                "CPU ms (ours / SDK)",
                "boto3",
                "target",
                "",
            ],
            rows,
        ),
        *_cold_start_floors(data),
    ]
    uncompiled = data.get("uncompiled")
    if uncompiled:
        base = uncompiled["sdk"]["ms"]
        lines += [
            "",
            f"Without `.pyc` files for anything but the standard library (a package built without its target "
            f"interpreter: each cold start compiles every other module), median of {uncompiled['runs']}:",
            "",
            *table(
                ["handler", "cvc-sync ms", "official SDK ms", "ratio"],
                [
                    [f"`{h['name']}`", number(h["uncompiled"]["ms"]), number(base), ratio(base / h["uncompiled"]["ms"])]
                    for h in data["handlers"]
                    if "uncompiled" in h
                ],
            ),
        ]
    sdk_split = sdk.get("importSplitMs") or {}
    floor_groups = {g for floor in (data.get("floors") or {}).values() for g in floor.get("importSplitMs") or {}}
    groups = sorted({g for _, split in splits for g in split} | set(sdk_split) | floor_groups, key=_group_order)
    if groups:
        split_rows = [[f"`{name}`", *_split_cells(split, groups)] for name, split in splits]
        split_rows.append(["official SDK", *_split_cells(sdk_split, groups)])
        split_rows += [
            [f"{kind} floor", *_split_cells(floor.get("importSplitMs") or {}, groups)]
            for kind, floor in (data.get("floors") or {}).items()
        ]
        lines += [
            "",
            "Where the import time goes (ms under `python -X importtime`, which inflates every figure; each module's "
            "own time goes to its package, else to the package that imported it; `other`: imported outside any "
            "import, e.g. lazily at the first event):",
            "",
            *table(["", *groups, "total"], split_rows),
        ]
    imported = data.get("requestsImport")
    if imported:
        lines += [
            "",
            *table(
                ["import alone (fresh process)", "ms", "-X importtime split (ms)"],
                [
                    ["`import requests` (cvc-sync's)", number(imported["oursMs"]), key_values(imported["oursSplitMs"])],
                    [
                        "the SDK's vendored requests",
                        number(imported["sdkVendoredMs"]),
                        key_values(imported["sdkVendoredSplitMs"]),
                    ],
                ],
            ),
        ]
    return lines


def _cold_start_floors(data: Results) -> list[str]:
    """Each handler against its floor (issue 15): the whole process, ours / the floor's, at most the target."""
    floors = data.get("floors")
    if not floors:
        return []
    rows = []
    for handler in data["handlers"]:
        floor = handler.get("floor")
        if not floor:
            continue
        rows.append(
            [
                f"`{handler['name']}`",
                number(handler["processMs"]),
                floor["kind"],
                number(floor["processMs"]),
                ratio(floor["ratio"]),
                ratio(floor["inProcessRatio"]),
                f"≤ {floor['target']:g}× its floor",
                verdict(floor["ratio"] <= floor["target"]),
            ]
        )
    what = "; ".join(f"{kind}: {floor['what']}" for kind, floor in floors.items())
    return [
        "",
        "Against the floor, the smallest script doing the same work in a fresh process, measured in the same runs "
        f"({what}). Whole process: from spawning the interpreter to the answer; ours / the floor's time, so lower "
        "is better here:",
        "",
        *table(
            ["handler", "cvc-sync ms", "floor", "floor ms", "ours / floor", "in process", "target", ""],
            rows,
        ),
    ]


SPLIT_ORDER = (
    "requests+urllib3",
    "requests (SDK's vendored copy)",
    "boto3+botocore",
    "cvcsync",
    "stdlib/orjson via cvcsync",
    "official SDK",
    "stdlib/jmespath via official SDK",
)


def _group_order(group: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(group) if group in SPLIT_ORDER else len(SPLIT_ORDER), group)


def _split_cells(split: Mapping[str, float], groups: Sequence[str]) -> list[str]:
    return [number(split[g]) if split.get(g) else "—" for g in groups] + [number(sum(split.values()))]


def client(data: Results) -> list[str]:
    rows = []
    for label, key in (
        ("import time (ms, fresh processes)", "importMs"),
        ("GetAccountInfo wall time per call (ms, median)", "callWallMs"),
        ("GetAccountInfo client CPU per call (ms)", "callCpuMs"),
    ):
        ours, sdk = data[key]["ours"], data[key]["sdk"]
        rows.append([label, number(ours), number(sdk), ratio(sdk / ours), NO_TARGET])
    users = data["usersPerSecond"]
    count = data.get("params", {}).get("users", "N")
    rows.append(
        [
            f"users/s creating {count} users (ours batched, SDK one per call)",
            number(users["ours"]),
            number(users["sdk"]),
            ratio(users["ours"] / users["sdk"]),
            NO_TARGET,
        ]
    )
    return table(["measure", "cvc-sync", "official SDK", "ratio", "target"], rows)
