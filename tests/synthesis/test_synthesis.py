import numpy as np
import pytest
from scipy import ndimage

from hisyngen.errors import HisynError
from hisyngen.synthesis import STRATEGIES, make_strategy, sample_rng
from hisyngen.synthesis.bezier import blob_outline, blob_points, rasterise

from pools import flat_pool, source_colour

ALL = sorted(STRATEGIES)


def interior(mask: np.ndarray, value: int) -> np.ndarray:
    """Pixels equal to ``value`` whose whole 5x5 neighbourhood is too: away from the seams where
    bilinear warps (zoom up to 1.2) blend neighbouring sources. Outside the image counts as
    "not value": beyond the edge is unknown."""
    return ndimage.binary_erosion(mask == value, structure=np.ones((5, 5)), border_value=0)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("policy", ["ignore", "tissue"])
def test_masks_are_valid_and_traceable_to_sources_of_their_class(name, policy):
    # Sources at the output size (no resampling overshoot); white corners only where they are ignored,
    # because under 'tissue' white is legitimately labelled with the class.
    # One colour per class: a seam between two tiles of the same class is not a defect.
    pool = flat_pool([3, 2, 4, 2], size=(96, 96), white_corner=30 if policy == "ignore" else 0, colour_by="class")
    strategy = make_strategy(name, {"size": 96, "background_policy": policy})
    colour_class = {source_colour(c): c for c in range(4)}
    for index in range(12):
        sample = strategy.generate(pool, sample_rng(0, name, index))
        assert sample.image.shape == (96, 96, 3) and sample.image.dtype == np.uint8
        assert sample.mask.shape == (96, 96) and sample.mask.dtype == np.uint8
        values = set(np.unique(sample.mask).tolist())
        assert values <= {0, 1, 2, 3, 255}
        if policy == "tissue":
            assert 255 not in values
        used = {pool.tissue(i) for i in sample.sources}
        assert values - {255} <= used  # no class that the drawn sources do not have
        for c in values - {255}:
            inner = interior(sample.mask, c)
            colours = {tuple(p) for p in sample.image[inner].reshape(-1, 3).tolist()}
            # pixels deep inside a class-c region carry the exact colour of some class-c source
            assert all(colour_class.get(col) == c for col in colours), (name, c, colours - set(colour_class))
        if policy == "ignore" and 255 in values:
            inner = interior(sample.mask, 255)
            assert (sample.image[inner] == 255).all()  # ignore = the sources' white background


def test_white_background_is_labelled_with_the_class_under_tissue_policy():
    pool = flat_pool([1, 1], white_corner=64)  # sources are entirely white
    sample = make_strategy("onelabel", {"size": 64, "background_policy": "tissue", "max_redraws": 0}).generate(
        pool, sample_rng(0, "onelabel", 0))
    assert (sample.image == 255).all() and len(np.unique(sample.mask)) == 1 and sample.mask[0, 0] in (0, 1)


@pytest.mark.parametrize("name", ALL)
def test_same_generator_same_sample_and_different_index_differs(name):
    pool = flat_pool([3, 3, 3])
    strategy = make_strategy(name, {"size": 64})
    a = strategy.generate(pool, sample_rng(5, name, 7))
    b = strategy.generate(pool, sample_rng(5, name, 7))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask) and a.geometry == b.geometry
    others = [strategy.generate(pool, sample_rng(5, name, i)) for i in range(8)]
    assert any(not np.array_equal(a.image, o.image) for o in others)


def test_streams_are_independent():
    assert sample_rng(0, "mosaic", 3).random() != sample_rng(0, "mosaic", 3, stream="discriminator").random()
    assert sample_rng(0, "mosaic", 3).random() != sample_rng(0, "bezier", 3).random()


def test_mosaic_quadrants_meet_at_the_anchor():
    # grid 1, no flip, no shift-scale-rotate: each quadrant is one flat source
    pool = flat_pool([6, 6])
    strategy = make_strategy("mosaic", {"size": 100, "grid": 1, "flip_p": 0, "ssr_p": 0})
    for index in range(20):
        sample = strategy.generate(pool, sample_rng(1, "mosaic", index))
        ah, aw = sample.geometry["anchor"]
        assert ah % 2 == 0 and aw % 2 == 0 and 20 <= ah <= 80 and 20 <= aw <= 80
        quadrants = [(slice(0, ah), slice(0, aw)), (slice(0, ah), slice(aw, 100)),
                     (slice(ah, 100), slice(0, aw)), (slice(ah, 100), slice(aw, 100))]
        for q, window in enumerate(quadrants):
            region = sample.image[window].reshape(-1, 3)
            assert (region == source_colour(sample.sources[q])).all()
            assert (sample.mask[window] == pool.tissue(sample.sources[q])).all()


def test_mosaic_anchor_is_even_and_in_range_with_default_parameters():
    strategy = make_strategy("mosaic")
    anchors = np.array([strategy.draw_anchor(sample_rng(0, "mosaic", i)) for i in range(500)])
    assert (anchors % 2 == 0).all()
    # uniform in [0.2, 0.8) x 224 = [44.8, 179.2), rounded to the nearest even number
    assert anchors.min() >= 44 and anchors.max() <= 180
    assert anchors.std() > 20  # spread over the range, not stuck


def test_mosaic_transforms_are_drawn_with_the_paper_probabilities():
    pool = flat_pool([2, 2])
    strategy = make_strategy("mosaic", {"size": 32})
    flips, rotated = [], []
    for i in range(300):
        for quadrant in strategy.generate(pool, sample_rng(0, "mosaic", i)).geometry["quadrants"]:
            flips.append(quadrant["flip"] != "none")
            rotated.append(quadrant["angle"] != 0.0)
            assert abs(quadrant["angle"]) <= 45 and 0.8 <= quadrant["scale"] <= 1.2
            assert all(abs(s) <= 0.0625 for s in quadrant["shift"])
    assert 0.76 < np.mean(flips) < 0.84 and 0.76 < np.mean(rotated) < 0.84


def test_sources_smaller_than_tiles_are_padded():
    pool = flat_pool([2, 2], size=(30, 45))
    for name in ALL:
        sample = make_strategy(name, {"size": 224}).generate(pool, sample_rng(0, name, 0))
        assert sample.image.shape == (224, 224, 3) and set(np.unique(sample.mask)) <= {0, 1, 255}


def test_defaults_are_the_papers():
    # SPEC.md sections 3-4: the numbers the paper (and its reference code) used
    common = {"size": 224, "background_policy": "ignore", "max_background": 0.8}
    mosaic = {"grid": 2, "anchor": [0.2, 0.8], "flip_p": 0.8, "ssr_p": 0.8, "shift": 0.0625, "scale": [0.8, 1.2],
              "rotate": 45.0}
    assert make_strategy("mosaic").params().items() >= {**common, **mosaic}.items()
    assert make_strategy("mosaic-nosplice").params().items() >= {**common, **mosaic, "grid": 1}.items()
    bezier = {"points": 5, "rad": 0.2, "edgy": 0.05, "min_spacing": 0.7, "pairs": None}
    assert make_strategy("bezier").params().items() >= {**common, **bezier}.items()
    assert make_strategy("gridded").params()["grid"] == 2


@pytest.mark.parametrize("name", ALL)
def test_resized_masks_stay_class_indices(name):
    # Sources of another size than the output are resampled (bicubic/bilinear images): masks must
    # be resampled nearest, or the white corners' 255 would blend into in-between values.
    pool = flat_pool([2, 2, 2], size=(70, 90), white_corner=25)
    strategy = make_strategy(name, {"size": 200})
    for index in range(8):
        sample = strategy.generate(pool, sample_rng(0, name, index))
        assert set(np.unique(sample.mask).tolist()) <= {0, 1, 2, 255}, name


@pytest.mark.parametrize("name", ["onelabel", "bezier", "cutmix"])
def test_whole_sources_above_the_background_limit_are_redrawn(name):
    pool = flat_pool([3, 3], white_corner=0)
    pool.backgrounds[0][:] = True  # source 0 is all background
    pool.images[0][:] = 255
    strategy = make_strategy(name, {"size": 64, "max_background": 0.8})
    for i in range(30):
        assert 0 not in strategy.generate(pool, sample_rng(0, name, i)).sources


def test_tiles_above_the_background_limit_are_redrawn():
    pool = flat_pool([2, 2], white_corner=0)
    pool.backgrounds[0][:] = True  # source 0 is all background
    pool.images[0][:] = 255
    strategy = make_strategy("gridded", {"size": 64, "max_background": 0.8})
    for i in range(30):
        assert 0 not in strategy.generate(pool, sample_rng(0, "gridded", i)).sources


def test_bezier_masks_are_closed_filled_and_plausible():
    rng = np.random.default_rng(0)
    fractions = []
    for _ in range(400):
        points, tries = blob_points(rng, 5, 0.7 / 5, 200)
        gaps = np.linalg.norm(np.roll(points, -1, axis=0) - points, axis=1)
        assert tries == 200 or gaps.min() >= 0.7 / 5  # closing edge included
        inside = rasterise(blob_outline(points, 0.2, 0.05), 224)
        assert inside.any()
        _, parts = ndimage.label(inside)
        assert parts == 1  # closed: one piece
        holes = ndimage.binary_fill_holes(inside) & ~inside
        assert not holes.any()  # filled
        fractions.append(inside.mean())
    assert 0.25 < np.mean(fractions) < 0.38  # issue 3: "n=5: mean ~0.3"


def test_bezier_uses_two_different_classes_and_respects_pairs():
    pool = flat_pool([2, 2, 2])
    strategy = make_strategy("bezier", {"size": 64, "pairs": "2:0"}, classes=("a", "b", "c"))
    for i in range(10):
        sample = strategy.generate(pool, sample_rng(0, "bezier", i))
        assert sample.geometry["pair"] == [2, 0] and set(np.unique(sample.mask)) == {0, 2}
    pairs = {tuple(make_strategy("bezier", {"size": 32}).generate(pool, sample_rng(0, "bezier", i)).geometry["pair"])
             for i in range(200)}
    assert pairs == {(a, b) for a in range(3) for b in range(3) if a != b}


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("mosaic", {"anchor": "0,0.5"}, "anchor range"),
        ("mosaic", {"anchor": "0.6,0.4"}, "anchor range"),
        ("mosaic", {"anchor": "0.2,1.0"}, "anchor range"),
        ("bezier", {"points": 2}, "points must be an integer >= 3"),
        ("bezier", {"size": 0}, "size must be an integer in 1..8192"),
        ("gridded", {"size": -4}, "size must be an integer in 1..8192"),
        ("onelabel", {"size": 100000}, "size must be an integer in 1..8192"),
        ("bezier", {"min_spacing": 50}, r"min_spacing must be in \[0, 2\]"),
        ("bezier", {"min_spacing": float("nan")}, r"min_spacing must be in \[0, 2\]"),
        ("bezier", {"max_tries": 10 ** 12}, "max_tries must be an integer in 1..100000"),
        ("mosaic-nosplice", {"grid": 3}, "grid is 1 for mosaic-nosplice"),
        ("mosaic", {"flip_p": 1.5}, "probability"),
        ("mosaic", {"colour": 1}, "has no parameter 'colour'"),
        ("bezier", {"points": "many"}, "not a valid int"),
        ("nosuch", {}, "unknown strategy"),
        ("bezier", {"background_policy": "white"}, "background_policy"),
    ],
)
def test_impossible_parameters_are_refused(name, params, message):
    with pytest.raises(HisynError, match=message):
        make_strategy(name, params)


def test_pools_that_cannot_serve_a_strategy_are_refused():
    classes = ("TUM", "STR", "LYM")
    with pytest.raises(HisynError, match="class LYM has no single-tissue"):
        make_strategy("mosaic").check_pool(flat_pool([2, 2, 0]), classes)
    make_strategy("mosaic", {"allow_missing_classes": True}).check_pool(flat_pool([2, 2, 0]), classes)
    with pytest.raises(HisynError, match="at least 2 classes"):
        make_strategy("bezier", {"allow_missing_classes": True}).check_pool(flat_pool([3, 0, 0]), classes)
    with pytest.raises(HisynError, match="class 2 in pairs has no single-tissue source"):
        make_strategy("cutmix", {"pairs": "TUM:LYM", "allow_missing_classes": True}, classes).check_pool(
            flat_pool([2, 2, 0]), classes)
    with pytest.raises(HisynError, match="unknown class 'FAT'"):
        make_strategy("bezier", {"pairs": "FAT:TUM"}, classes)


@pytest.mark.parametrize("flip", ["none", "horizontal", "vertical", "both"])
def test_folded_warp_equals_flip_then_rotate_then_crop(flip):
    """The one-warp quadrant equals the spec's steps done one by one on the whole gridded image."""
    import cv2

    from hisyngen.synthesis.mosaic import affine_matrix

    rng = np.random.default_rng(1)
    size = 96
    image = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (0, 0), 2)  # smooth: robust to rounding
    angle, scale, shift, crop, quadrant = 23.0, 1.1, (0.04, -0.03), (17, 29), (40, 50)
    flipped = {"none": image, "horizontal": image[:, ::-1], "vertical": image[::-1],
               "both": image[::-1, ::-1]}[flip]
    rotation = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), angle, scale)
    rotation[:, 2] += np.array(shift) * size
    whole = cv2.warpAffine(np.ascontiguousarray(flipped), rotation, (size, size), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT_101)
    expected = whole[crop[0]:crop[0] + quadrant[0], crop[1]:crop[1] + quadrant[1]]
    folded = cv2.warpAffine(image, affine_matrix(size, flip, angle, scale, shift, crop), (quadrant[1], quadrant[0]),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    assert np.abs(folded.astype(int) - expected.astype(int)).max() <= 1  # fixed-point rounding only


def test_small_sources_are_padded_with_reflect_101():
    import cv2

    from pools import MemoryPool

    gradient = np.repeat(np.arange(40, dtype=np.uint8)[None, :, None] * 6, 30, axis=0).repeat(3, axis=2)
    pool = MemoryPool([gradient], [0], 1)
    strategy = make_strategy("gridded", {"size": 64, "grid": 1, "allow_missing_classes": True})
    sample = strategy.generate(pool, sample_rng(0, "gridded", 0))
    expected = cv2.copyMakeBorder(gradient, 0, 64 - 30, 0, 64 - 40, cv2.BORDER_REFLECT_101)
    assert np.array_equal(sample.image, expected)


def test_a_registered_strategy_is_offered_by_every_command_that_generates(monkeypatch, tmp_path):
    # The CLI lists the registry itself: a strategy registered later (a new module, a plugin) is a
    # --strategy choice of synth, filter-train and filter with no second list to update, after the
    # paper's two.
    from dataclasses import dataclass
    from typing import ClassVar

    from click.testing import CliRunner

    from hisyngen.cli import cli
    from hisyngen.synthesis import Strategy

    @dataclass(frozen=True)
    class Extra(Strategy):
        name: ClassVar[str] = "test-extra"

    monkeypatch.setitem(STRATEGIES, Extra.name, Extra)
    for command in ("synth", "filter-train", "filter"):
        shown = CliRunner().invoke(cli, [command, "--help"]).output
        assert "--strategy [mosaic|bezier|" in shown and "|test-extra]" in shown, command
    result = CliRunner().invoke(cli, ["synth", str(tmp_path / "missing"), "-s", "test-extra", "-o", str(tmp_path / "out")])
    assert "--strategy" not in result.output and result.exit_code == 1  # past the choice, stopped by the missing source


def test_command_line_defaults_are_read_from_the_library_not_repeated(monkeypatch):
    # A default changed in its one home (the Strategy or TrainConfig field) is the command's default.
    import dataclasses
    import re

    from click.testing import CliRunner

    from hisyngen.cli import cli
    from hisyngen.filtering.train import TrainConfig
    from hisyngen.synthesis import Strategy

    def patch(owner, name, value):
        monkeypatch.setattr(next(f for f in dataclasses.fields(owner) if f.name == name), "default", value)

    patch(Strategy, "size", 192)
    patch(Strategy, "max_background", 0.75)
    patch(TrainConfig, "epochs", 7)
    for command in ("synth", "filter-train", "filter"):
        shown = " ".join(CliRunner().invoke(cli, [command, "--help"]).output.split())
        assert re.search(r"--size INTEGER .*\[default: 192\]", shown) and "[default: 0.75]" in shown, command
    shown = " ".join(CliRunner().invoke(cli, ["filter-train", "--help"]).output.split())
    assert re.search(r"--epochs INTEGER .*?\[default: 7\]", shown)


@pytest.mark.parametrize("params, message", [
    ({"anchor": "0.3"}, "anchor needs 2 comma-separated values"),
    ({"scale": "1.0"}, "scale needs 2 comma-separated values"),
    ({"pairs": ""}, "pairs is empty"),
])
def test_malformed_parameters_are_refused(params, message):
    name = "bezier" if "pairs" in params else "mosaic"
    with pytest.raises(HisynError, match=message):
        make_strategy(name, params, classes=("a", "b"))
