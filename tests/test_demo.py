import numpy as np
import pytest

from hisyngen.demo import DemoSize, compose, present_classes, write_demo_source
from hisyngen.errors import HisynError
from hisyngen.imageio import read_mask, read_rgb
from hisyngen.sources import open_source


def test_demo_source_reads_as_bcss_wsss_with_every_class(tmp_path):
    root = write_demo_source(tmp_path / "demo", seed=1, sizes=DemoSize(single_per_class=3, multi=6, val=2, test=2, size=96))
    assert (root / "DEMO_DATA.txt").read_text().startswith("DEMO DATA - NOT REAL TISSUE")
    source = open_source(root)
    assert source.spec.name == "bcss-wsss" and source.problems == []
    assert {c: len(v) for c, v in source.single_tissue_pools().items()} == {0: 3, 1: 3, 2: 3, 3: 3}
    assert len(source.multi_tissue()) == 6 and len(source.val) == 2 and len(source.test) == 2
    assert all(p.name.startswith("DEMO-") for p in (root / "training").iterdir())
    for record in source.val + source.test:
        mask = read_mask(record.mask_path)
        assert set(np.unique(mask).tolist()) <= {0, 1, 2, 3, 4}
        assert mask.shape == read_rgb(record.path).shape[:2]
    before = sorted(p.read_bytes() for p in (root / "training").iterdir())
    write_demo_source(root, seed=1)  # already there: untouched
    assert sorted(p.read_bytes() for p in (root / "training").iterdir()) == before


def test_demo_labels_match_the_drawn_regions():
    rng = np.random.default_rng(0)
    image, mask = compose([0, 2], rng, size=64, white=True)
    assert image.shape == (64, 64, 3) and set(np.unique(mask).tolist()) <= {0, 2, 4}
    assert (image[mask == 4] > 230).all()  # background is white
    labels = present_classes(mask)
    assert labels[1] == labels[3] == 0 and labels == tuple(int((mask == c).mean() >= 0.02) for c in range(4))


def test_demo_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("x")
    with pytest.raises(HisynError, match="not a hisyngen demo source"):
        write_demo_source(tmp_path)
