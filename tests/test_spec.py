import json

import pytest

from hisyngen.errors import HisynError
from hisyngen.spec import BUILTIN_SPECS, DatasetSpec, get_spec, load_spec_file


def test_builtin_specs_match_spec_md():
    # Values transcribed from SPEC.md section 2 (not from the code).
    bcss = get_spec("bcss-wsss")
    assert bcss.classes == ("TUM", "STR", "LYM", "NEC")
    assert bcss.background_index == 4
    assert bcss.palette[3] == (153, 0, 255) and bcss.palette[4] == (255, 255, 255)
    assert set(bcss.split_dirs["train"]) == {"training", "train"}
    luad = get_spec("LUAD_HistoSeg")
    assert luad.classes == ("TE", "NEC", "LYM", "TAS") and luad.palette[0] == (205, 51, 51)
    wsss = get_spec("wsss4luad")
    assert wsss.classes == ("tumor", "stroma", "normal") and wsss.background_index == 3
    assert wsss.palette[:3] == ((0, 64, 128), (64, 128, 0), (243, 152, 0))
    assert wsss.split_dirs["val"] == ("2.validation",)
    assert all(s.ignore_index == 255 for s in BUILTIN_SPECS.values())


def test_mask_palette_places_background_at_its_index():
    spec = get_spec("wsss4luad")
    flat = spec.mask_palette()
    assert len(flat) == 768
    assert flat[9:12] == [255, 255, 255]  # index 3 = background
    assert flat[0:3] == [0, 64, 128]


def test_unknown_dataset_names_the_choices():
    with pytest.raises(HisynError, match="bcss-wsss"):
        get_spec("camelyon")


def test_custom_spec_yaml(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("name: mine\nclasses: [a, b]\nsplit_dirs: {train: tr, val: [va]}\n")
    spec = load_spec_file(path)
    assert spec.classes == ("a", "b") and spec.background_index == 2
    assert len(spec.palette) == 3 and spec.palette[-1] == (255, 255, 255)
    assert spec.split_dirs["train"] == ("tr",)


def test_custom_spec_json_roundtrip(tmp_path):
    spec = get_spec("bcss-wsss")
    path = tmp_path / "s.json"
    path.write_text(json.dumps(spec.to_dict()))
    assert load_spec_file(path) == spec


@pytest.mark.parametrize(
    "data, message",
    [
        ({"classes": ["a", "a"]}, "duplicate"),
        ({"classes": ["a", "b"], "palette": [[1, 2, 3]]}, "palette needs 3"),
        ({"classes": ["a", "b"], "background_index": 1}, "background_index"),
        ({"classes": ["a"], "palette": [[1, 2, 300]]}, "RGB triple"),
        ({"classes": []}, "non-empty"),
        ({"classes": ["a"], "colour": 1}, "unknown spec keys"),
        ({"classes": ["a"], "label_format": "xml"}, "label_format"),
        ({"classes": ["a"], "split_dirs": {"train": 5}}, "'split_dirs' must map split names to a folder name or a list"),
    ],
)
def test_invalid_specs_are_refused(data, message):
    with pytest.raises(HisynError, match=message):
        DatasetSpec.from_dict(data)


def test_unparseable_spec_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("classes: [a, b\n")
    with pytest.raises(HisynError, match="bad.yaml"):
        load_spec_file(path)
