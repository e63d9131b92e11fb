"""The safety gates: one named test per rule."""

from __future__ import annotations

from pathlib import Path

from cvcsync.engine.guards import CAPACITY, COMPLETENESS, DELETION, GROUP, GuardFacts, GuardSettings, evaluate
from cvcsync.engine.plan import build_plan
from cvcsync.engine.state import ShadowState
from cvcsync.engine.workspace import DELTA, PlanInput
from cvcsync.inputs.readers import SourceRow
from cvcsync.inputs.records import parse_user


def facts(**kw: object) -> GuardFacts:
    base: dict[str, object] = dict(
        mode="full", deletes=0, creates=0, valid_users=1000, state_users=1000, last_snapshot_users=1000
    )
    base.update(kw)
    return GuardFacts(**base)  # type: ignore[arg-type]


def by_name(results: list, name: str):  # type: ignore[no-untyped-def]
    return next(r for r in results if r.name == name)


def test_a_few_deletions_pass() -> None:
    assert by_name(evaluate(facts(deletes=9), GuardSettings()), DELETION).passed


def test_more_deletions_than_the_count_limit_are_refused() -> None:
    result = by_name(evaluate(facts(deletes=501, state_users=100000), GuardSettings(max_deletes=500)), DELETION)
    assert not result.passed and "501 deletions" in result.detail


def test_more_than_the_percentage_is_refused() -> None:
    result = by_name(evaluate(facts(deletes=30, state_users=100), GuardSettings(max_delete_percent=20)), DELETION)
    assert not result.passed and "30.0%" in result.detail


def test_the_percentage_rule_ignores_tiny_changes() -> None:
    assert by_name(evaluate(facts(deletes=3, state_users=5), GuardSettings()), DELETION).passed


def test_a_truncated_snapshot_is_refused() -> None:
    result = by_name(evaluate(facts(valid_users=700), GuardSettings(max_snapshot_drop_percent=20)), COMPLETENESS)
    assert not result.passed and "30.0% fewer" in result.detail


def test_an_empty_snapshot_is_refused() -> None:
    assert not by_name(evaluate(facts(valid_users=0), GuardSettings()), COMPLETENESS).passed


def test_the_first_snapshot_and_delta_files_have_nothing_to_compare() -> None:
    assert by_name(evaluate(facts(last_snapshot_users=None), GuardSettings()), COMPLETENESS).passed
    assert by_name(evaluate(facts(mode="delta", valid_users=1), GuardSettings()), COMPLETENESS).passed


def test_capacity_refuses_a_plan_that_outgrows_the_licence() -> None:
    result = by_name(evaluate(facts(creates=60, capacity=1050, cvc_users=1000), GuardSettings()), CAPACITY)
    assert not result.passed and "1060 users after this run" in result.detail


def test_unknown_capacity_passes_and_says_so() -> None:
    result = by_name(evaluate(facts(creates=10**6), GuardSettings()), CAPACITY)
    assert result.passed and "unknown" in result.detail


def test_an_override_marks_failed_gates_overridden_but_never_capacity() -> None:
    results = evaluate(facts(deletes=900, valid_users=100, creates=10, capacity=5), GuardSettings(override=True))
    assert by_name(results, DELETION).overridden and by_name(results, COMPLETENESS).overridden
    assert not by_name(results, CAPACITY).overridden and not by_name(results, CAPACITY).passed


def test_passed_gates_are_not_marked_overridden() -> None:
    assert not by_name(evaluate(facts(), GuardSettings(override=True)), DELETION).overridden


def test_the_accounting_check_refuses_a_lost_record() -> None:
    import pytest

    from cvcsync.engine.outcomes import AccountingError, check_accounting

    check_accounting(3, {"created": 2, "rejected": 1})
    with pytest.raises(AccountingError, match="received 3 records but counted 2"):
        check_accounting(3, {"created": 2})


def test_a_snapshot_of_another_group_is_refused_and_a_shared_group_passes() -> None:
    other = facts(state_groups=frozenset({"88"}), snapshot_groups=frozenset({"99"}))
    result = by_name(evaluate(other, GuardSettings()), GROUP)
    assert not result.passed and "99" in result.detail and "nothing in common" in result.detail
    overlap = facts(state_groups=frozenset({"88", "77"}), snapshot_groups=frozenset({"88", "66"}))
    assert by_name(evaluate(overlap, GuardSettings()), GROUP).passed
    first_sync = facts(state_groups=frozenset(), snapshot_groups=frozenset({"99"}))
    assert by_name(evaluate(first_sync, GuardSettings()), GROUP).passed


# --- the group gate for deltas, on real plans (facts as runs.export builds them) --------------------------------


def member(uid: str, group: str, name: str = "张三") -> dict[str, str]:
    return {"userId": uid, "userName": name, "groupId": group, "groupName": group.upper()}


def delta_facts(tmp_path: Path, synced: list[dict[str, str]], delta: list[dict[str, str]]) -> GuardFacts:
    state = ShadowState(tmp_path / "state.sqlite")
    try:
        users = [parse_user(u) for u in synced]
        state.upsert([(u.user_id, u.content_hash(), u.to_json().decode()) for u in users])
        items = [SourceRow(line, dict(row)) for line, row in enumerate(delta, start=2)]
        plan = build_plan(PlanInput(items, DELTA), state, tmp_path)
        try:
            counts = plan.op_counts()
            return GuardFacts(
                mode=plan.mode,
                deletes=counts["delete"],
                creates=counts["create"],
                valid_users=plan.valid_users(),
                state_users=state.count(),
                last_snapshot_users=state.snapshot_rows,
                state_groups=state.groups(),
                snapshot_groups=plan.groups(),
            )
        finally:
            plan.close()
    finally:
        state.close()


ACME = [member(f"e{i}", "g-acme") for i in range(10)]


def test_a_delta_moving_users_to_a_group_the_state_never_held_is_refused(tmp_path: Path) -> None:
    moved = [member("e1", "g-other"), member("e2", "g-other"), member("e3", "g-other"), member("e4", "g-acme", "李四")]
    gathered = delta_facts(tmp_path, ACME, moved)
    result = by_name(evaluate(gathered, GuardSettings()), GROUP)
    assert not result.passed and not result.overridden
    assert result.detail == (
        "the delta's upserts are in groups g-acme, g-other, the synced users' groups g-acme: "
        "g-other never synced before (users moved to another group or enterprise?)"
    )
    approved = by_name(evaluate(gathered, GuardSettings(override=True)), GROUP)  # an approval lets it through
    assert not approved.passed and approved.overridden


def test_a_delta_whose_upserts_stay_in_the_states_groups_passes(tmp_path: Path) -> None:
    synced = [*ACME, member("x1", "g-east")]
    delta = [member("e1", "g-acme", "李四"), member("new", "g-east"), {"userId": "e2", "op": "delete"}]
    result = by_name(evaluate(delta_facts(tmp_path, synced, delta), GuardSettings()), GROUP)
    assert result.passed and "g-acme, g-east" in result.detail


def test_a_delta_counts_only_the_groups_of_its_valid_upserts(tmp_path: Path) -> None:
    """A refused row (here two people under one id) and a delete put nobody into a group."""
    delta = [member("e1", "g-acme", "李四"), member("dup", "g-other", "甲"), member("dup", "g-other", "乙")]
    facts_of_plan = delta_facts(tmp_path, ACME, [*delta, {"userId": "e9", "op": "delete", "groupId": "g-x"}])
    assert facts_of_plan.snapshot_groups == {"g-acme"}
    assert by_name(evaluate(facts_of_plan, GuardSettings()), GROUP).passed


def test_a_first_delta_sync_has_no_groups_to_compare(tmp_path: Path) -> None:
    result = by_name(evaluate(delta_facts(tmp_path, [], [member("a", "g-other")]), GuardSettings()), GROUP)
    assert result.passed and "nothing to compare" in result.detail
