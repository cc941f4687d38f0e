"""The CORINE nomenclature: 44 level-3 classes in 5 level-1 groups, grid codes, parsing."""

from __future__ import annotations

import pytest

from aethera.data import corine


def test_44_classes_in_5_groups() -> None:
    assert len(corine.CLASSES) == 44
    assert [g.key for g in corine.GROUPS] == ["artificial", "agricultural", "forest_semi_natural", "wetlands", "water"]
    counts = {g.key: sum(1 for c in corine.CLASSES.values() if c.group is g) for g in corine.GROUPS}
    assert counts == {"artificial": 11, "agricultural": 11, "forest_semi_natural": 12, "wetlands": 5, "water": 5}
    assert len({c.level2 for c in corine.CLASSES.values()}) == 15


@pytest.mark.parametrize(
    "code,label,group",
    [
        (111, "Continuous urban fabric", "artificial"),
        (243, "Land principally occupied by agriculture, with significant areas of natural vegetation", "agricultural"),
        (324, "Transitional woodland-shrub", "forest_semi_natural"),
        (412, "Peat bogs", "wetlands"),
        (523, "Sea and ocean", "water"),
    ],
)
def test_labels_and_groups(code: int, label: str, group: str) -> None:
    assert corine.label(code) == label
    assert corine.group(code).key == group


def test_unknown_code() -> None:
    assert corine.lookup(999) is None
    assert corine.label(999) == "Unknown class (code 999)"
    assert corine.group(999) is corine.UNCLASSIFIED


def test_natural_classes() -> None:
    assert corine.CLASSES[311].natural and corine.CLASSES[411].natural and corine.CLASSES[512].natural
    assert not corine.CLASSES[243].natural and not corine.CLASSES[112].natural


def test_grid_codes() -> None:
    assert corine.from_grid_code(1) == 111
    assert corine.from_grid_code(12) == 211
    assert corine.from_grid_code(44) == 523
    assert corine.from_grid_code(corine.GRID_CODE_NODATA) is None


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("111", 111),
        (" 312 ", 312),
        (211.0, 211),
        (512, 512),
        (None, None),
        ("", None),
        ("abc", None),
        (12.5, None),
        (True, None),
    ],
)
def test_parse_code(raw: object, expected: int | None) -> None:
    assert corine.parse_code(raw) == expected
