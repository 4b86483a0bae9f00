"""Tags on statement lines, the statement searched by text, tag and amount, and saved top-up
templates: plain domain rules, no fixtures."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.wallet.domain import (
    MAX_TEMPLATES,
    LineStatus,
    RejectionReason,
    StatementKind,
    StatementLine,
    SubBalance,
    TopUpTemplates,
    WalletRejected,
    filter_statement,
    normalize_tags,
    tag_statement_line,
    with_tags,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 9, 1, 5, 0, tzinfo=UTC)


def line(operation_id: str, amount: int, description: str = "") -> StatementLine:
    return StatementLine(NOW, StatementKind.PURCHASE, operation_id, LineStatus.COMPLETED, amount,
                         abs(amount), 0, description)


def test_tags_are_kept_case_folded_without_the_hash_and_each_once() -> None:
    assert normalize_tags(["#Обеды", " обеды ", "в  школе", "snack-1"]) == (
        "обеды", "в школе", "snack-1")


@pytest.mark.parametrize("tags", [["a/b"], [""], ["#"], ["x" * 33], list("abcdef")])
def test_a_tag_that_is_empty_too_long_odd_or_one_too_many_is_refused(tags: list[str]) -> None:
    with pytest.raises(WalletRejected) as refused:
        normalize_tags(tags)
    assert refused.value.reason is RejectionReason.INVALID_TAGS


def test_only_a_line_of_the_account_can_be_tagged() -> None:
    assert tag_statement_line("s1", ["обеды"], recorded_kinds={"sales"},
                              reissue_ids=()).tags == ("обеды",)
    assert tag_statement_line("r1", ["x"], recorded_kinds=(), reissue_ids={"r1"}).tags == ("x",)
    for kinds in (set(), {"disputes"}):
        with pytest.raises(WalletRejected) as refused:
            tag_statement_line("d1", ["x"], recorded_kinds=kinds, reissue_ids=())
        assert refused.value.reason is RejectionReason.UNKNOWN_OPERATION


def test_the_statement_is_searched_by_text_tag_and_the_size_of_the_amount() -> None:
    lines = with_tags([line("top-1", 500_00, "bank_card -> canteen"),
                       line("s1", -120_00, "terminal till-1"), line("s2", -35_00, "Булочная")],
                      {"s1": ("обеды",), "top-1": ("обеды", "школа")})
    ids = lambda found: [x.operation_id for x in found]  # noqa: E731
    assert ids(filter_statement(lines, tag="обеды")) == ["top-1", "s1"]
    assert ids(filter_statement(lines, text="БУЛОЧ")) == ["s2"]
    assert ids(filter_statement(lines, text="till")) == ["s1"]
    assert ids(filter_statement(lines, amount_min=100_00, amount_max=200_00)) == ["s1"]
    assert ids(filter_statement(lines, amount_max=35_00)) == ["s2"]
    assert ids(filter_statement(lines, tag="обеды", amount_min=200_00)) == ["top-1"]


def test_templates_are_saved_changed_named_once_at_most_ten_and_deleted() -> None:
    box = TopUpTemplates("40012345")
    box.save("t1", name=" Обеды ", amount=1500_00, sub_balance=SubBalance.CANTEEN, now=NOW,
             create=True)
    again = box.save("t1", name="Обеды", amount=1500_00, sub_balance=SubBalance.CANTEEN,
                     now=NOW, create=True)  # the same request again: nothing changes
    assert again.name == "Обеды" and box.version == 1
    with pytest.raises(WalletRejected) as clash:
        box.save("t2", name="ОБЕДЫ", amount=1_00, sub_balance=SubBalance.GENERAL, now=NOW,
                 create=True)
    assert clash.value.reason is RejectionReason.TEMPLATE_NAME_CONFLICT
    box.save("t1", name="Обеды", amount=2000_00, sub_balance=SubBalance.CANTEEN, now=NOW,
             create=False)
    for n in range(2, MAX_TEMPLATES + 1):
        box.save(f"t{n}", name=f"T{n}", amount=1_00, sub_balance=SubBalance.TRANSIT, now=NOW,
                 create=True)
    with pytest.raises(WalletRejected) as full:
        box.save("t99", name="Лишний", amount=1_00, sub_balance=SubBalance.GENERAL, now=NOW,
                 create=True)
    assert full.value.reason is RejectionReason.TOO_MANY_TEMPLATES
    with pytest.raises(WalletRejected) as bonus:
        box.save("t1", name="Обеды", amount=1_00, sub_balance=SubBalance.BONUS, now=NOW,
                 create=False)
    assert bonus.value.reason is RejectionReason.INVALID_TEMPLATE
    box.delete("t1")
    with pytest.raises(WalletRejected) as gone:
        box.delete("t1")
    assert gone.value.reason is RejectionReason.UNKNOWN_TEMPLATE
    restored = TopUpTemplates.from_doc(box.to_doc())
    assert [t.template_id for t in restored.templates] == [f"t{n}" for n in range(2, 11)]
    assert restored.version == box.version
