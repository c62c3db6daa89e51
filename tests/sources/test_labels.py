import pytest

from hisyngen.sources.labels import LabelParseError, labels_from_names, parse_bracket_labels, parse_label_text


@pytest.mark.parametrize(
    "name, classes, expected",
    [
        ("436219-7159-48057-[1, 0, 0]", 3, (1, 0, 0)),  # WSSS4LUAD
        ("TCGA-A1-A0SK-DX1_xmin45749_ymin25055_MPP-0.2500+12[0101]", 4, (0, 1, 0, 1)),  # BCSS-WSSS
        ("1031280-2300-27920-[1 0 0 1]", 4, (1, 0, 0, 1)),  # LUAD-HistoSeg
        ("a[9]b-[1,1,0]", 3, (1, 1, 0)),  # the LAST bracket holds the labels
        ("x-[ 1  0 ,1 ]", 3, (1, 0, 1)),  # sloppy spacing
        ("x-[1]", None, (1,)),
    ],
)
def test_bracket_formats(name, classes, expected):
    assert parse_bracket_labels(name, classes) == expected


@pytest.mark.parametrize(
    "name, classes, message",
    [
        ("plain_name", None, "no '\\[labels\\]'"),
        ("x-[1, 0", None, "without a closing"),
        ("x-[1, 2, 0]", None, "0/1"),
        ("x-[]", None, "0/1"),
        ("x-[__import__('os')]", None, "0/1"),  # never evaluated
        ("x-[1 0 0]", 4, "3 values, the dataset has 4"),
        ("x-[01011]", 4, "5 values"),
    ],
)
def test_bad_brackets(name, classes, message):
    with pytest.raises(LabelParseError, match=message):
        parse_bracket_labels(name, classes)


def test_label_text_accepts_brackets_and_runs():
    assert parse_label_text("[0, 1]") == (0, 1)
    assert parse_label_text("0110", 4) == (0, 1, 1, 0)


def test_labels_from_names_is_case_insensitive_and_strict():
    assert labels_from_names(["tum", " NEC"], ("TUM", "STR", "LYM", "NEC")) == (1, 0, 0, 1)
    with pytest.raises(LabelParseError, match="unknown class 'FAT'"):
        labels_from_names(["FAT"], ("TUM", "STR"))
