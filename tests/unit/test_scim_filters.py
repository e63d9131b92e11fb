"""SCIM filters and PATCH paths (RFC 7644 3.4.2.2, 3.5.2): the RFC's own examples, the IdPs' shapes, errors that
name the character, evaluation, and properties over generated filters."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cvcsync.http_api.scim.errors import ScimError
from cvcsync.http_api.scim.filters import (
    ENTERPRISE_USER,
    AttrPath,
    Compare,
    Filter,
    Logical,
    Not,
    ValuePath,
    equality_terms,
    matches,
    parse_filter,
    parse_path,
)

# RFC 7644 section 3.4.2.2's examples, verbatim.
RFC_EXAMPLES = [
    'userName Eq "john"',
    'userName eq "bjensen"',
    'name.familyName co "O\'Malley"',
    'userName sw "J"',
    'urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J"',
    "title pr",
    'meta.lastModified gt "2011-05-13T04:42:34Z"',
    'meta.lastModified ge "2011-05-13T04:42:34Z"',
    'meta.lastModified lt "2011-05-13T04:42:34Z"',
    'meta.lastModified le "2011-05-13T04:42:34Z"',
    'title pr and userType eq "Employee"',
    'title pr or userType eq "Intern"',
    'schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"',
    'userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")',
    'userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")',
    'userType eq "Employee" and (emails.type eq "work")',
    'userType eq "Employee" and emails[type eq "work" and value co "@example.com"]',
    'emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]',
]

BJENSEN = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE_USER],
    "userName": "bjensen",
    "name": {"familyName": "O'Malley", "givenName": "Barbara"},
    "userType": "Employee",
    "title": "Tour Guide",
    "emails": [{"type": "work", "value": "bjensen@example.com"}, {"type": "home", "value": "babs@example.org"}],
    "active": True,
    "meta": {"lastModified": "2011-05-13T04:42:34Z"},
    ENTERPRISE_USER: {"department": "Tour Operations"},
}


@pytest.mark.parametrize("text", RFC_EXAMPLES)
def test_every_rfc_example_parses(text: str) -> None:
    assert parse_filter(text) is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('userName Eq "BJENSEN"', True),  # operators and userName ignore case
        ('name.familyName co "malley"', True),
        ('userName sw "J"', False),
        ('urn:ietf:params:scim:schemas:core:2.0:User:userName sw "b"', True),
        ("title pr", True),
        ("nickName pr", False),
        ('meta.lastModified ge "2011-05-13T04:42:34Z"', True),
        ('meta.lastModified gt "2011-05-13T04:42:34Z"', False),
        ('title pr and userType eq "Employee"', True),
        ('userType eq "Employee" and emails[type eq "work" and value co "@example.com"]', True),
        ('emails[type eq "home"].value eq "babs@example.org"', True),  # Entra ID's form, with .value after ]
        ('emails[type eq "work"].value eq "babs@example.org"', False),
        ('emails co "example.org"', True),  # a complex multi-valued attribute compares by its value
        ('userType ne "Employee" and not (emails co "example.com")', False),
        (f'{ENTERPRISE_USER}:department eq "tour operations"', True),
        ("active eq true", True),
        ("active eq false", False),
        ('externalId eq "x"', False),
        ("externalId eq null", True),
    ],
)
def test_evaluation(text: str, expected: bool) -> None:
    assert matches(BJENSEN, parse_filter(text)) is expected


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("userName eq", 12, "a value"),
        ('userName xx "a"', 10, "expected an operator"),
        ('(userName eq "a"', 17, "')'"),
        ('userName eq "a" )', 17, "unexpected ')'"),
        ('userName eq "open', 13, "unexpected character"),
        ("userName eq bjensen", 13, "expected a value"),
        ('"userName" eq "a"', 1, "expected an attribute name"),
    ],
)
def test_errors_name_the_character_and_what_was_expected(text: str, position: int, words: str) -> None:
    with pytest.raises(ScimError) as caught:
        parse_filter(text)
    error = caught.value
    assert error.status == 400 and error.scim_type == "invalidFilter"
    assert f"character {position}" in error.detail and words in error.detail


def test_paths() -> None:
    assert parse_path('emails[type eq "work"].value').sub == "value"
    assert parse_path("name.familyName").attr == AttrPath(None, "name", "familyName")
    assert parse_path(f"{ENTERPRISE_USER}:department").attr == AttrPath(ENTERPRISE_USER, "department")
    assert parse_path(ENTERPRISE_USER).attr == AttrPath(None, ENTERPRISE_USER)  # the extension as a whole
    assert parse_path('members[value eq "2819c223"]').expr == Compare(AttrPath(None, "value"), "eq", "2819c223")
    for bad in ("", "emails[", 'name.familyName[type eq "x"]', "emails]"):
        with pytest.raises(ScimError) as caught:
            parse_path(bad)
        assert caught.value.scim_type == "invalidPath"


def test_equality_terms_are_what_an_index_can_answer() -> None:
    terms = list(equality_terms(parse_filter('userName eq "a" and (title pr or x eq "y") and externalId eq "e"')))
    assert [(t.path.name, t.value) for t in terms] == [("userName", "a"), ("externalId", "e")]
    assert list(equality_terms(parse_filter('userName eq "a" or externalId eq "e"'))) == []


# -- properties -----------------------------------------------------------------------------------------------------

_names = st.sampled_from(["userName", "title", "active", "emails", "name", "externalId", "x-y_z1"])
_subs = st.one_of(st.none(), st.sampled_from(["value", "type", "givenName"]))
_paths = st.builds(AttrPath, st.sampled_from([None, ENTERPRISE_USER]), _names, _subs)
_values = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.text(max_size=12).filter(lambda s: "\x00" not in s)
)
_compares = st.one_of(
    st.builds(Compare, _paths, st.sampled_from(["eq", "ne", "co", "sw", "ew", "gt", "lt", "ge", "le"]), _values),
    st.builds(Compare, _paths, st.just("pr")),
)


def _render(expr: Filter) -> str:
    import orjson

    if isinstance(expr, Compare):
        if expr.op == "pr":
            return f"{expr.path} pr"
        return f"{expr.path} {expr.op} {orjson.dumps(expr.value).decode()}"
    if isinstance(expr, Logical):
        return f"({_render(expr.left)}) {expr.op} ({_render(expr.right)})"
    if isinstance(expr, Not):
        return f"not ({_render(expr.expr)})"
    return f"{expr.path}[{_render(expr.expr)}]"


_filters = st.recursive(
    _compares,
    lambda inner: st.one_of(
        st.builds(Logical, st.sampled_from(["and", "or"]), inner, inner),
        st.builds(Not, inner),
        st.builds(ValuePath, st.builds(AttrPath, st.just(None), st.just("emails")), inner),
    ),
    max_leaves=6,
)


@given(_filters)
def test_a_rendered_filter_parses_back_to_itself(expr: Filter) -> None:
    assert parse_filter(_render(expr)) == expr


@given(st.text(max_size=60))
def test_any_text_is_a_filter_or_an_invalid_filter_error(text: str) -> None:
    try:
        parse_filter(text)
    except ScimError as error:
        assert error.status == 400 and error.scim_type == "invalidFilter"


@given(_filters)
def test_not_is_the_complement(expr: Filter) -> None:
    assert matches(BJENSEN, Not(expr)) is not matches(BJENSEN, expr)
