"""Safety gates, checked after planning and before anything destructive is sent.

- Deletion threshold: more deletions than ``max_deletes``, or (when at least ``PERCENT_RULE_MINIMUM`` deletions)
  more than ``max_delete_percent`` of the users in the state, is refused.
- Completeness: a full snapshot with ``max_snapshot_drop_percent`` fewer valid users than the last accepted one is
  refused (a truncated export, an empty file, a file of the wrong enterprise all land here).
- Capacity: where GetAccountInfo answers, a plan that would exceed the licensed number of users is refused.
- Group: a full snapshot whose users belong to none of the groups the state holds is refused (an export of another
  enterprise or group: small directories slip under the deletion percentages, this does not). A delta deletes
  little and is no complete picture, so it is held to more: any groupId among its valid upserts that no synced user
  holds is refused (users moved into another enterprise's group), the new groups named. With no synced users (a
  first sync), or no valid upsert carrying a group, there is nothing to compare and the gate passes; nor when no
  valid user is created or updated (``only_unchanged``): an unchanged user's record is the state's, so its group is
  one the synced users hold, and the groups need not be read at all (a scan of every record, input and state).

A refused run sends no deletion, sends its upserts only when ``upserts_when_refused`` says so (never after a
capacity or group refusal), and says why in the report. An approval (setting or marker object) overrides the
deletion, completeness and group gates, never capacity: CVC would refuse those calls anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from cvcsync.engine.outcomes import GuardResult

PERCENT_RULE_MINIMUM = 10
DELETION, COMPLETENESS, CAPACITY, GROUP = "deletionThreshold", "completeness", "capacity", "group"


@dataclass(frozen=True)
class GuardSettings:
    max_deletes: int = 500
    max_delete_percent: float = 20.0
    max_snapshot_drop_percent: float = 20.0
    upserts_when_refused: bool = False
    override: bool = False


@dataclass(frozen=True)
class GuardFacts:
    """What the gates look at: the plan's counts, the state, and (if known) the licence."""

    mode: str
    deletes: int
    creates: int
    valid_users: int
    state_users: int
    last_snapshot_users: int | None
    capacity: int | None = None
    cvc_users: int | None = None
    state_groups: frozenset[str] = frozenset()  # groupIds of the users in the state
    snapshot_groups: frozenset[str] = frozenset()  # groupIds of the input's valid users (a delta: valid upserts)
    only_unchanged: bool = False  # no valid user is created or updated: both sets may be left empty, unread


def deletion_threshold(facts: GuardFacts, settings: GuardSettings) -> GuardResult:
    share = 100.0 * facts.deletes / facts.state_users if facts.state_users else 0.0
    too_many = facts.deletes > settings.max_deletes
    too_large = facts.deletes >= PERCENT_RULE_MINIMUM and share > settings.max_delete_percent
    detail = (
        f"{facts.deletes} deletions ({share:.1f}% of {facts.state_users} synced users); "
        f"limits {settings.max_deletes} and {settings.max_delete_percent:g}%"
    )
    return GuardResult(DELETION, not (too_many or too_large), detail, overridden=settings.override)


def completeness(facts: GuardFacts, settings: GuardSettings) -> GuardResult:
    last = facts.last_snapshot_users
    if facts.mode != "full" or not last:
        return GuardResult(
            COMPLETENESS,
            True,
            "no earlier full snapshot to compare with"
            if facts.mode == "full"
            else "delta files are not complete snapshots",
        )
    drop = 100.0 * (last - facts.valid_users) / last
    detail = (
        f"{facts.valid_users} valid users now, {last} in the last accepted snapshot "
        f"({drop:.1f}% fewer; limit {settings.max_snapshot_drop_percent:g}%)"
    )
    return GuardResult(COMPLETENESS, drop <= settings.max_snapshot_drop_percent, detail, overridden=settings.override)


def capacity(facts: GuardFacts) -> GuardResult:
    if facts.capacity is None:
        return GuardResult(CAPACITY, True, "licensed capacity unknown (GetAccountInfo did not answer)")
    current = max(facts.cvc_users or 0, facts.state_users)
    projected = current + facts.creates - facts.deletes
    detail = (
        f"{projected} users after this run ({current} now, +{facts.creates}, -{facts.deletes}); "
        f"licence {facts.capacity}"
    )
    return GuardResult(CAPACITY, projected <= facts.capacity, detail)


def group(facts: GuardFacts, settings: GuardSettings) -> GuardResult:
    if facts.only_unchanged:
        return GuardResult(GROUP, True, "no user is created or updated: every group is one the synced users hold")
    if not facts.state_groups or not facts.snapshot_groups:
        return GuardResult(GROUP, True, "nothing to compare (a first sync, or no valid user with a group)")
    if facts.mode != "full":
        new = facts.snapshot_groups - facts.state_groups
        detail = (
            f"the delta's upserts are in groups {_names(facts.snapshot_groups)}, the synced users' groups "
            f"{_names(facts.state_groups)}"
            + (f": {_names(new)} never synced before (users moved to another group or enterprise?)" if new else "")
        )
        return GuardResult(GROUP, not new, detail, overridden=settings.override)
    shared = facts.state_groups & facts.snapshot_groups
    detail = (
        f"the snapshot's groups {_names(facts.snapshot_groups)}, the synced users' groups {_names(facts.state_groups)}"
        + ("" if shared else ": nothing in common (a file of another group or enterprise?)")
    )
    return GuardResult(GROUP, bool(shared), detail, overridden=settings.override)


def _names(groups: frozenset[str]) -> str:
    listed = sorted(groups)
    return ", ".join(listed[:5]) + (f" and {len(listed) - 5} more" if len(listed) > 5 else "")


def evaluate(facts: GuardFacts, settings: GuardSettings) -> list[GuardResult]:
    results = [
        deletion_threshold(facts, settings),
        completeness(facts, settings),
        capacity(facts),
        group(facts, settings),
    ]
    for result in results:
        if result.passed:
            result.overridden = False
    return results
