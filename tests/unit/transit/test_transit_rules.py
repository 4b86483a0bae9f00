import copy
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from services.transit.domain import FareRulebook, FareRulesError, Mode, parse_fare_rules

pytestmark = pytest.mark.unit

RULES_FILE = Path(__file__).resolve().parents[3] / "services" / "transit" / "fare_rules.json"


def _operator() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(RULES_FILE.read_text(encoding="utf-8"))
    operator: dict[str, Any] = doc["operators"][0]
    return operator


def test_the_default_rules_file_parses_into_one_rulebook_per_operator() -> None:
    books = parse_fare_rules(json.loads(RULES_FILE.read_text(encoding="utf-8")))

    assert set(books) == {"izhevsk-gortrans", "moscow-transport"}
    izhevsk = books["izhevsk-gortrans"]
    assert izhevsk.time_zone == "Europe/Samara"
    bus = izhevsk.versions[-1].fares[Mode.BUS]
    assert bus.concession <= bus.full
    assert books["moscow-transport"].versions[0].max_transfers is None


def test_a_rulebook_survives_a_round_trip_through_its_document() -> None:
    book = FareRulebook.from_doc(_operator())

    assert FareRulebook.from_doc(book.to_doc()) == book


def test_the_version_in_force_is_the_latest_one_effective_on_the_local_date() -> None:
    book = FareRulebook.from_doc(_operator())

    assert book.version_on(date(2024, 12, 31)) is None
    assert book.version_on(date(2025, 12, 31)).version == "2025-01"  # type: ignore[union-attr]
    assert book.version_on(date(2026, 1, 1)).version == "2026-01"  # type: ignore[union-attr]


def _break(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(_operator())
    target: Any = doc
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is KeyError:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "error_path"),
    [
        ("time_zone", "Mars/Olympus", "operator.time_zone"),
        ("versions.0.fares.bus.concession", 5000, "operator.versions[0].fares.bus.concession"),
        ("versions.0.fares.bus.full", True, "operator.versions[0].fares.bus.full"),
        ("versions.0.fares.bus.full", 33.5, "operator.versions[0].fares.bus.full"),
        ("versions.0.fares.ferry", {"full": 1, "concession": 1}, "operator.versions[0].fares"),
        ("versions.0.caps.weekly", 100, "operator.versions[0].caps.weekly"),
        ("versions.0.transfer.window_minutes", -5, "operator.versions[0].transfer.window_minutes"),
        ("versions.0.transfer.same_route", KeyError, "operator.versions[0].transfer.same_route"),
        ("versions.1.effective_from", "2024-01-01", "operator.versions"),
        ("versions.1.effective_from", "01.01.2026", "operator.versions[1].effective_from"),
        ("versions", [], "operator.versions"),
        ("late_upload_days", KeyError, "operator.late_upload_days"),
    ],
)
def test_invalid_rules_are_refused_with_the_path_of_the_offending_field(
    path: str, value: Any, error_path: str
) -> None:
    with pytest.raises(FareRulesError) as caught:
        FareRulebook.from_doc(_break(path, value))

    assert caught.value.path == error_path


def test_two_operators_with_the_same_id_are_refused() -> None:
    with pytest.raises(FareRulesError, match="duplicate operator"):
        parse_fare_rules({"schema_version": 1, "operators": [_operator(), _operator()]})


def test_an_unknown_schema_version_is_refused() -> None:
    with pytest.raises(FareRulesError, match="schema_version"):
        parse_fare_rules({"schema_version": 2, "operators": []})
