"""The safety gates: one named test per rule."""

from __future__ import annotations

from cvcsync.engine.guards import CAPACITY, COMPLETENESS, DELETION, GROUP, GuardFacts, GuardSettings, evaluate


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
    delta = facts(mode="delta", state_groups=frozenset({"88"}), snapshot_groups=frozenset({"99"}))
    assert by_name(evaluate(delta, GuardSettings()), GROUP).passed
