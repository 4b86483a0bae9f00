"""Keyset pages: every line once and in order across pages, whatever is added meanwhile; a
cursor of another query, or garbage, refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.runtime.paging import InvalidCursor, page, scope_of

pytestmark = pytest.mark.unit

SCOPE = scope_of(contract="40012345", kinds=None)


def walk(items: list[tuple[int, str]], limit: int, *, descending: bool = False
         ) -> list[list[tuple[int, str]]]:
    pages, cursor = [], None
    while True:
        chosen, cursor = page(items, lambda i: i, limit=limit, cursor=cursor, scope=SCOPE,
                              descending=descending)
        pages.append(chosen)
        if cursor is None:
            return pages


@given(st.lists(st.tuples(st.integers(0, 20), st.text("ab", max_size=3)), unique=True),
       st.integers(1, 7), st.booleans())
def test_the_pages_join_into_the_whole_list_in_order(items, limit, descending):
    items = sorted(items, reverse=descending)
    pages = walk(items, limit, descending=descending)
    assert [i for p in pages for i in p] == items
    assert all(len(p) <= limit for p in pages)
    assert all(pages[:-1]) and (len(pages) == 1 or pages[-1])


def test_an_empty_list_is_one_empty_page_with_no_cursor():
    assert page([], lambda i: i, limit=5, cursor=None, scope=SCOPE) == ([], None)


def test_lines_added_between_requests_neither_repeat_nor_shift_the_next_page():
    items = [(t, "x") for t in (10, 20, 30, 40)]
    first, cursor = page(items, lambda i: i, limit=2, cursor=None, scope=SCOPE)
    later = sorted([*items, (5, "new"), (25, "new")])  # one before the cursor, one after
    second, _ = page(later, lambda i: i, limit=2, cursor=cursor, scope=SCOPE)
    assert first == [(10, "x"), (20, "x")]
    assert second == [(25, "new"), (30, "x")]


@pytest.mark.parametrize("cursor", ["", "not base64!", "eyJ4IjogMX0", "W10"])
def test_garbage_is_refused(cursor):
    with pytest.raises(InvalidCursor):
        page([(1, "a")], lambda i: i, limit=1, cursor=cursor, scope=SCOPE)


def test_a_cursor_of_other_filters_is_refused():
    _, cursor = page([(1, "a"), (2, "b")], lambda i: i, limit=1, cursor=None, scope=SCOPE)
    other = scope_of(contract="40012345", kinds=["sale"])
    with pytest.raises(InvalidCursor, match="other filters"):
        page([(1, "a"), (2, "b")], lambda i: i, limit=1, cursor=cursor, scope=other)


def test_a_forged_key_of_another_shape_is_refused():
    _, cursor = page([("a", "a"), ("b", "b")], lambda i: i, limit=1, cursor=None, scope=SCOPE)
    with pytest.raises(InvalidCursor):
        page([(1, "a"), (2, "b")], lambda i: i, limit=1, cursor=cursor, scope=SCOPE)
