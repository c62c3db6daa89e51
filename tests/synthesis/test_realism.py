"""Issue 18: stain-matched mixing and feathered seams (kernels and strategies)."""

import cv2
import numpy as np
import pytest
from scipy import ndimage

from hisyngen.corpus import CorpusConfig, synthesize
from hisyngen.errors import HisynError
from hisyngen.synthesis import describe_strategies, make_strategy, sample_rng
from hisyngen.synthesis.base import pad_reflect
from hisyngen.synthesis.seams import blend_grid, edge_weights, reflect_window
from hisyngen.synthesis.stain import lab_stats, macenko, macenko_basis, reinhard, reinhard_affine, transfer

from pools import MemoryPool, flat_pool

# Typical H&E optical density vectors (the reference stains often used with Macenko's method)
HEMATOXYLIN = np.array([0.5626, 0.7201, 0.4062]) / np.linalg.norm([0.5626, 0.7201, 0.4062])
EOSIN = np.array([0.2159, 0.8012, 0.5581]) / np.linalg.norm([0.2159, 0.8012, 0.5581])
MIXING = ("mosaic", "mosaic-nosplice", "bezier", "cutmix", "gridded")


def stained(stains: np.ndarray, size: int = 96, seed: int = 0, strength: tuple[float, float] = (1.0, 1.0),
            white: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An image made of two stains (columns of ``stains``: OD vectors) with random, spatially smooth
    concentrations (a third of the pixels hold one stain only), and its background mask (a white
    top-left square)."""
    rng = np.random.default_rng(seed)
    concentrations = cv2.GaussianBlur(rng.random((size, size, 2)).astype(np.float32), (0, 0), 1.5)
    low, high = concentrations.min(axis=(0, 1)), concentrations.max(axis=(0, 1))
    concentrations = np.clip(((concentrations - low) / (high - low) - 0.3) / 0.7, 0, 1) * 1.6 * np.array(strength)
    od = concentrations @ stains.T
    image = np.clip(np.rint(256.0 * np.exp(-od) - 1.0), 0, 255).astype(np.uint8)
    background = np.zeros((size, size), bool)
    if white:
        image[:white, :white] = 255
        background[:white, :white] = True
    return image, background


def rotated(vector: np.ndarray, degrees: float) -> np.ndarray:
    """``vector`` turned by ``degrees`` within its plane with the blue axis (a different stain)."""
    other = np.cross(vector, [0.0, 0.0, 1.0])
    other /= np.linalg.norm(other)
    theta = np.radians(degrees)
    turned = np.cos(theta) * vector + np.sin(theta) * np.cross(other, vector)
    return np.abs(turned) / np.linalg.norm(turned)


# --- stain kernels ------------------------------------------------------------------------

def test_reinhard_maps_the_lab_statistics_onto_the_reference():
    source, source_bg = stained(np.stack([HEMATOXYLIN, EOSIN], 1), seed=1, strength=(1.3, 0.5), white=20)
    target, target_bg = stained(np.stack([rotated(HEMATOXYLIN, 12), EOSIN], 1), seed=2, strength=(0.6, 1.2))
    a, b = lab_stats(source, source_bg), lab_stats(target, target_bg)
    assert np.abs(np.array(a.mean) - b.mean).max() > 10  # the test is not trivial
    out = reinhard(source, source_bg, a, b)
    lab = cv2.cvtColor(out, cv2.COLOR_RGB2LAB)[~source_bg].astype(float)  # every tissue pixel, not a subsample
    assert np.abs(lab.mean(axis=0) - b.mean).max() < 2.0
    assert np.abs(lab.std(axis=0) - b.std).max() < 0.1 * max(b.std) + 1.0
    assert np.array_equal(out[source_bg], source[source_bg])  # white background untouched
    assert not np.array_equal(out[~source_bg], source[~source_bg])
    fast = reinhard_affine(source, source_bg, a, b)  # what the strategies apply
    assert np.array_equal(fast[source_bg], source[source_bg])
    assert np.abs(fast[~source_bg].astype(int) - out[~source_bg]).mean() < 1.5


def test_affine_reinhard_is_close_to_the_exact_map(shared_data, tmp_path):
    from hisyngen.sources import build_pool_pack, open_source

    pack, _ = build_pool_pack(open_source(shared_data / "bcss-wsss-mini"), cache_dir=tmp_path)
    rng = np.random.default_rng(0)
    errors, moves = [], []
    for _ in range(30):
        i, j = (int(v) for v in rng.integers(len(pack), size=2))
        a, b = lab_stats(pack.image(i), pack.background(i)), lab_stats(pack.image(j), pack.background(j))
        exact = reinhard(pack.image(i), pack.background(i), a, b).astype(int)
        tissue = ~pack.background(i)
        errors.append(np.abs(reinhard_affine(pack.image(i), pack.background(i), a, b)[tissue] - exact[tissue]).mean())
        moves.append(np.abs(pack.image(i)[tissue] - exact[tissue]).mean())
    assert np.mean(errors) < 1.5 and max(errors) < 4 and np.mean(moves) > 5 * np.mean(errors), (errors, moves)


def test_macenko_recovers_known_stain_vectors():
    for hematoxylin, eosin in [(HEMATOXYLIN, EOSIN), (rotated(HEMATOXYLIN, 15), rotated(EOSIN, -10))]:
        image, background = stained(np.stack([hematoxylin, eosin], 1), seed=3, white=24)
        basis = macenko_basis(image, background)
        assert basis is not None
        found_h, found_e = basis.vectors[:, 0], basis.vectors[:, 1]
        assert found_h @ hematoxylin > 0.995 and found_e @ eosin > 0.995, (found_h, found_e)


def test_macenko_transfer_takes_on_the_reference_stains_and_range():
    source, source_bg = stained(np.stack([rotated(HEMATOXYLIN, 15), rotated(EOSIN, -10)], 1), seed=4,
                                strength=(0.7, 1.3), white=16)
    target, target_bg = stained(np.stack([HEMATOXYLIN, EOSIN], 1), seed=5)
    own, reference = macenko_basis(source, source_bg), macenko_basis(target, target_bg)
    out = macenko(source, source_bg, own, reference)
    after = macenko_basis(out, source_bg)
    assert after.vectors[:, 0] @ HEMATOXYLIN > 0.99 and after.vectors[:, 1] @ EOSIN > 0.99
    assert np.allclose(after.max_concentrations, reference.max_concentrations, rtol=0.08)
    assert np.array_equal(out[source_bg], source[source_bg])


def test_stain_kernels_are_pure_and_skip_what_they_cannot_measure():
    image, background = stained(np.stack([HEMATOXYLIN, EOSIN], 1), seed=6, white=10)
    copy = image.copy()
    for stats in (lab_stats, macenko_basis):
        a, b = stats(image, background), stats(image[::-1].copy(), background[::-1].copy())
        first, second = transfer(image, background, a, b), transfer(image, background, a, b)
        assert np.array_equal(first, second) and np.array_equal(image, copy)
    flat = np.full((64, 64, 3), (180, 90, 140), np.uint8)
    assert macenko_basis(flat, np.zeros((64, 64), bool)) is None  # one colour spans no stain plane
    assert lab_stats(image, np.ones(image.shape[:2], bool)) is None  # all background: nothing to measure
    assert transfer(image, background, None, lab_stats(image, background)) is image


# --- seam kernels -------------------------------------------------------------------------

def test_reflect_window_matches_reflect_101_padding():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (7, 11, 3), dtype=np.uint8)
    padded = cv2.copyMakeBorder(small, 5, 5, 6, 6, cv2.BORDER_REFLECT_101)
    assert np.array_equal(reflect_window(small, -5, -6, 17, 23), padded)
    assert np.array_equal(reflect_window(small, 0, 0, 30, 40), pad_reflect(small, 30, 40))  # repeated
    assert np.array_equal(reflect_window(small, 1, 2, 3, 4), small[1:4, 2:6])


@pytest.mark.parametrize("dtype", [np.uint8, bool])
def test_reflect_window_pads_any_overhang_as_reflect_101(dtype):
    # one-reflection windows take the copyMakeBorder shortcut, larger ones the index arrays: the
    # same pixels either way, also for the pools' bool background masks
    rng = np.random.default_rng(1)
    array = rng.integers(0, 2 if dtype is bool else 256, (9, 12, 3)[: 2 if dtype is bool else 3]).astype(dtype)
    def reflect(i, n):
        i = np.mod(i, 2 * (n - 1))
        return np.where(i >= n, 2 * (n - 1) - i, i)
    for y, x, h, w in [(-3, 0, 8, 12), (2, -4, 7, 10), (5, 6, 6, 9), (-8, -11, 26, 34), (-2, -2, 13, 16), (0, 9, 9, 8)]:
        expected = array[reflect(np.arange(y, y + h), 9)][:, reflect(np.arange(x, x + w), 12)]
        window = reflect_window(array, y, x, h, w)
        assert window.dtype == array.dtype and np.array_equal(window, expected), (y, x, h, w)


def test_grid_seams_cross_fade_only_near_the_edge_and_keep_their_side_dominant():
    px, width = 3, 40
    left = np.full((10, 20 + px, 3), 0, np.uint8)
    right = np.full((10, 20 + px, 3), 200, np.uint8)
    hard = blend_grid([[left, right]], (0, 10), (0, 20, width), 0)
    soft = blend_grid([[left, right]], (0, 10), (0, 20, width), px)
    row = soft[0, :, 0].astype(int)
    changed = np.nonzero(soft[0, :, 0] != hard[0, :, 0])[0]
    assert changed.tolist() == list(range(20 - px, 20 + px))
    assert (np.diff(row) >= 0).all()  # a monotone ramp
    assert (row[:20] < 100).all() and (row[20:] > 100).all()  # each side keeps more than half its own
    assert np.allclose(edge_weights(px) + edge_weights(px)[::-1], 1.0)  # symmetric: weights sum to 1


# --- strategies with the options ----------------------------------------------------------

@pytest.mark.parametrize("name, params, message", [
    ("mosaic", {"stain": "lab"}, "stain must be one of none, reinhard, macenko"),
    ("bezier", {"feather": -1}, "feather must be an integer number of pixels in 0..32"),
    ("cutmix", {"feather": 33}, "feather must be"),
    ("gridded", {"seam_ignore": "1.5"}, "not a valid int"),
    ("onelabel", {"stain": "reinhard"}, "onelabel has no parameter 'stain'"),
])
def test_impossible_realism_options_are_refused(name, params, message):
    with pytest.raises(HisynError, match=message):
        make_strategy(name, params)


def test_options_are_listed_and_enter_the_identity_only_when_set():
    lines = describe_strategies().splitlines()
    listed = {lines[i].split(":")[0]: lines[i + 1] for i in range(0, len(lines), 2)}
    for name, params in listed.items():
        assert ("stain='none', feather=0, seam_ignore=0" in params) == (name in MIXING), name
    plain, styled = make_strategy("bezier"), make_strategy("bezier", {"stain": "reinhard", "feather": 3})
    # a corpus or discriminator made before these options existed has exactly the plain params
    assert "stain" not in plain.params() and "feather" not in plain.sample_params()
    assert styled.params() == {**plain.params(), "stain": "reinhard", "feather": 3}
    assert make_strategy("bezier", styled.params()) == styled  # corpus.json round trip

    def config(strategy):
        return CorpusConfig(strategy="bezier", params=strategy.params(), seed=0, count=10, spec={},
                            source={"fingerprint": "f"})
    assert config(plain).differences(config(styled)) == ['params.feather: null vs 3', 'params.stain: null vs "reinhard"']


def textured_pool(per_class: list[int], size: int = 96) -> MemoryPool:
    """Stained-looking sources, each with its own stain strengths and a white corner (background)."""
    images, tissues, backgrounds = [], [], []
    for c, n in enumerate(per_class):
        for _ in range(n):
            k = len(images)
            image, background = stained(np.stack([rotated(HEMATOXYLIN, 4 * k), EOSIN], 1), size=size, seed=k,
                                        strength=(0.5 + 0.3 * (k % 3), 1.4 - 0.3 * (k % 3)), white=12)
            images.append(image)
            tissues.append(c)
            backgrounds.append(background)
    return MemoryPool(images, tissues, len(per_class), backgrounds)


@pytest.mark.parametrize("name", MIXING)
@pytest.mark.parametrize("stain", ["none", "reinhard", "macenko"])
def test_options_change_colours_and_seams_only(name, stain):
    pool = textured_pool([3, 3, 2])
    plain = make_strategy(name, {"size": 96})
    styled = make_strategy(name, {"size": 96, "stain": stain, "feather": 2})
    differ = 0
    for index in range(6):
        a = plain.generate(pool, sample_rng(0, name, index))
        b = styled.generate(pool, sample_rng(0, name, index))
        assert a.sources == b.sources and a.geometry == b.geometry
        assert np.array_equal(a.mask, b.mask)  # seam_ignore=0: the hard-cut mask, pixel for pixel
        differ += not np.array_equal(a.image, b.image)
    assert differ


def region_distance(image: np.ndarray, metric: str, outside_differs: bool = False) -> np.ndarray:
    """Distance of each pixel to the nearest pixel of another colour (flat-coloured images):
    'euclidean' or 'chessboard' (the max of the two axis distances); with ``outside_differs`` the
    pixels beyond the image count as another colour."""
    codes = image.astype(np.int64) @ np.array([1, 256, 65536])
    if outside_differs:
        codes = np.pad(codes, 1, constant_values=-1)
    distance = np.full(codes.shape, np.inf)
    for code in np.unique(codes):
        region = codes == code
        if region.all():
            continue
        to_other = (ndimage.distance_transform_edt(region) if metric == "euclidean"
                    else ndimage.distance_transform_cdt(region, metric="chessboard"))
        distance[region] = to_other[region]
    return distance[1:-1, 1:-1] if outside_differs else distance


@pytest.mark.parametrize("name, params, metric", [
    # distances are Chebyshev: at a corner where four grid cells meet, the diagonal one is within
    # px on both axes; a free-form region counts where a pixel's (2 px + 1)^2 window reaches it
    ("gridded", {"grid": 3}, "chessboard"),
    # flips and crops: seams stay axis-aligned. Two more kinds of seam than colour changes: the
    # anchor lines (each quadrant's continuation beyond its side is what cross-fades there, even
    # where both visible sides happen to share a colour) and, for grids, a tile seam that the
    # quadrant's crop leaves just outside the image (it still shades the pixels within px of it)
    ("mosaic", {"ssr_p": 0}, "chessboard-outside"),
    ("mosaic-nosplice", {"ssr_p": 0}, "chessboard"),
    ("cutmix", {}, "chessboard"),
    ("bezier", {}, "chessboard"),
])
def test_feathering_changes_only_pixels_within_px_of_a_seam(name, params, metric):
    pool = flat_pool([3, 3, 3], size=(96, 96))
    px = 3
    plain = make_strategy(name, {"size": 96, **params})
    feathered = make_strategy(name, {"size": 96, **params, "feather": px})
    changed_any = False
    for index in range(10):
        a = plain.generate(pool, sample_rng(1, name, index))
        b = feathered.generate(pool, sample_rng(1, name, index))
        changed = (a.image != b.image).any(axis=2)
        colour_distance = region_distance(a.image, metric.split("-")[0])
        distance = region_distance(a.image, metric.split("-")[0], outside_differs=metric.endswith("-outside"))
        if name.startswith("mosaic"):
            ah, aw = a.geometry["anchor"]
            rows, cols = np.arange(96)[:, None], np.arange(96)[None, :]
            to_anchor = np.minimum(np.where(rows < ah, ah - rows, rows - ah + 1), np.where(cols < aw, aw - cols, cols - aw + 1))
            distance = np.minimum(distance, to_anchor)
        assert (distance[changed] <= px).all(), (index, distance[changed].max())
        assert changed[colour_distance <= 1].all()  # every pixel next to a seam between two colours blends
        changed_any |= changed.any()
    assert changed_any


def test_mosaic_with_warps_differs_only_near_seams():
    # Rotated seams: a feathered quadrant is warped over a grown window, whose core can differ from
    # the plain warp by OpenCV's fixed-point rounding (1 level, rarely); anything more is a seam.
    pool = flat_pool([3, 3, 3], size=(96, 96))
    plain, feathered = make_strategy("mosaic", {"size": 96}), make_strategy("mosaic", {"size": 96, "feather": 2})
    for index in range(8):
        a = plain.generate(pool, sample_rng(2, "mosaic", index))
        b = feathered.generate(pool, sample_rng(2, "mosaic", index))
        codes = a.image.astype(np.int64) @ np.array([1, 256, 65536])
        # the image edge counts as a seam: tile seams just outside the crop shade the pixels near it
        edges = (ndimage.maximum_filter(codes, size=3, mode="constant", cval=-1)
                 != ndimage.minimum_filter(codes, size=3, mode="constant", cval=-1))
        ah, aw = a.geometry["anchor"]
        edges[ah - 1 : ah + 1] = edges[:, aw - 1 : aw + 1] = True  # the anchor lines (see above)
        near_seam = ndimage.binary_dilation(edges, structure=np.ones((3, 3)), iterations=4)
        far = np.abs(a.image.astype(int) - b.image)[~near_seam]
        assert far.max() <= 1 and (far > 0).mean() < 0.002


@pytest.mark.parametrize("name, params", [("gridded", {"grid": 3}), ("mosaic-nosplice", {"ssr_p": 0, "flip_p": 0})])
def test_seam_ignore_marks_exactly_the_band(name, params):
    pool = flat_pool([3, 3, 3], size=(96, 96))
    q = 2
    plain = make_strategy(name, {"size": 96, **params})
    banded = make_strategy(name, {"size": 96, **params, "seam_ignore": q})
    for index in range(6):
        a = plain.generate(pool, sample_rng(0, name, index))
        b = banded.generate(pool, sample_rng(0, name, index))
        if name == "gridded":
            ys = xs = [round(k * 96 / 3) for k in (1, 2)]
        else:
            (ah, aw) = a.geometry["anchor"]
            ys, xs = [ah], [aw]
        band = np.zeros((96, 96), bool)
        for e in ys:
            band[e - q : e + q] = True
        for e in xs:
            band[:, e - q : e + q] = True
        assert np.array_equal(b.mask, np.where(band, 255, a.mask))
        assert np.array_equal(a.image, b.image)  # seam_ignore alone leaves the image as it is


def test_bezier_seam_ignore_band_is_the_chebyshev_band():
    pool = flat_pool([3, 3], size=(96, 96))
    q = 2
    for index in range(6):
        a = make_strategy("bezier", {"size": 96}).generate(pool, sample_rng(0, "bezier", index))
        b = make_strategy("bezier", {"size": 96, "seam_ignore": q}).generate(pool, sample_rng(0, "bezier", index))
        inside = a.mask == a.geometry["pair"][0]
        distance = np.where(inside, ndimage.distance_transform_cdt(inside, metric="chessboard"),
                            ndimage.distance_transform_cdt(~inside, metric="chessboard"))
        assert np.array_equal(b.mask, np.where(distance <= q, 255, a.mask))


def test_stain_reference_is_left_as_it_is_and_the_rest_moves_toward_it():
    pool = textured_pool([3, 3])
    for name in ("bezier", "cutmix"):
        plain = make_strategy(name, {"size": 96})
        styled = make_strategy(name, {"size": 96, "stain": "reinhard"})
        for index in range(4):
            a = plain.generate(pool, sample_rng(0, name, index))
            b = styled.generate(pool, sample_rng(0, name, index))
            fg, bg = a.sources
            base = a.mask != a.geometry["pair"][0]
            assert np.array_equal(a.image[base], b.image[base])  # the base image is the reference
            pasted = ~base & (a.mask != 255)
            reference = lab_stats(pool.image(bg), pool.background(bg))
            before = cv2.cvtColor(a.image, cv2.COLOR_RGB2LAB)[pasted].mean(axis=0)
            after = cv2.cvtColor(b.image, cv2.COLOR_RGB2LAB)[pasted].mean(axis=0)
            assert np.abs(after - reference.mean).sum() < np.abs(before - reference.mean).sum()
    plain, styled = make_strategy("gridded", {"size": 96}), make_strategy("gridded", {"size": 96, "stain": "macenko"})
    a, b = plain.generate(pool, sample_rng(0, "gridded", 0)), styled.generate(pool, sample_rng(0, "gridded", 0))
    assert np.array_equal(a.image[:48, :48], b.image[:48, :48]) and not np.array_equal(a.image, b.image)


def test_same_bytes_for_one_and_two_workers_with_the_options(tmp_path):
    from fixtures import write_benchmark
    from hisyngen.sources import open_source
    from hisyngen.spec import get_spec

    labels = [(1, 0, 0, 0), (1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1), (0, 1, 0, 0), (1, 1, 0, 0)]
    write_benchmark(tmp_path / "src", get_spec("bcss-wsss"), labels, style="run", n_val=0, n_test=0, size=64)
    source = open_source(tmp_path / "src")
    for name, params in [("mosaic", {"stain": "reinhard", "feather": 3, "seam_ignore": 1}),
                         ("bezier", {"stain": "macenko", "feather": 2, "seam_ignore": 2})]:
        strategy = make_strategy(name, {"size": 64, **params})
        synthesize(source, strategy, tmp_path / f"{name}-w1", 70, seed=5, workers=1)
        synthesize(source, strategy, tmp_path / f"{name}-w2", 70, seed=5, workers=2)
        files = sorted(p.relative_to(tmp_path / f"{name}-w1") for p in (tmp_path / f"{name}-w1").rglob("*") if p.is_file())
        assert len([f for f in files if f.parts[0] == "images"]) == 70
        for f in files:
            assert (tmp_path / f"{name}-w1" / f).read_bytes() == (tmp_path / f"{name}-w2" / f).read_bytes(), f
        assert f'"stain": "{params["stain"]}"' in (tmp_path / f"{name}-w1" / "corpus.json").read_text()


def test_stain_matching_only_the_region_a_quadrant_reads_changes_nothing_it_shows():
    from hisyngen.synthesis.base import StainReference
    from hisyngen.synthesis.mosaic import FLIPS, affine_matrix, draw_grid, render_grid, source_region

    pool = textured_pool([3, 3, 2])
    strategy = make_strategy("mosaic", {"size": 96, "stain": "reinhard", "feather": 2})
    rng = np.random.default_rng(0)
    partial = 0
    for index in range(40):
        tiles, _, _, _ = draw_grid(strategy, pool, sample_rng(0, "mosaic", index), 96, 2, render=False)
        qh, qw = (int(v) for v in rng.integers(10, 86, 2))
        matrix = affine_matrix(96, FLIPS[index % 4], float(rng.uniform(-45, 45)) * (index % 3 > 0),
                               float(rng.uniform(0.8, 1.2)), tuple(rng.uniform(-0.06, 0.06, 2)),
                               (int(rng.integers(96 - qh + 1)), int(rng.integers(96 - qw + 1))))
        region = source_region(matrix, qw, qh, 96)
        partial += (region[1] - region[0]) * (region[3] - region[2]) < 96 * 96
        full = render_grid(strategy, pool, tiles, 96, 2, StainReference())
        limited = render_grid(strategy, pool, tiles, 96, 2, StainReference(), region)
        for grid in (full, limited):
            assert grid.shape == (96, 96, 3)
        warped = [cv2.warpAffine(g, matrix, (qw, qh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
                  for g in (full, limited)]
        assert np.array_equal(*warped), index
    assert partial > 20  # the region saves work in most draws
    from hisyngen.synthesis.mosaic import _folded

    # reads beyond an edge reflect (reflect-101) back into the image
    assert _folded(-30, 5, 96) == (0, 31) and _folded(90, 120, 96) == (71, 96) and _folded(-200, 5, 96) == (0, 96)
