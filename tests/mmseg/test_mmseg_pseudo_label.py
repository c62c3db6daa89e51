"""Pseudo-mask rules of the iterative stage, on hand-made logits (no model)."""

import numpy as np
import pytest

from hisyngen.mmseg.pseudo_label import pseudo_mask
from hisyngen.spec import flat_palette

TISSUE = np.full((32, 32, 3), (180, 90, 140), np.uint8)


def test_single_label_image_is_its_class_everywhere():
    mask = pseudo_mask(np.array([0, 0, 1, 0]), TISSUE, None)
    assert mask.shape == (32, 32) and (mask == 2).all()


def test_multi_label_suppresses_absent_classes_before_argmax():
    logits = np.zeros((4, 32, 32), np.float32)
    logits[0] = 10.0  # the most confident class is absent from the labels...
    logits[1, :, :16] = 2.0
    logits[3, :, 16:] = 2.0
    mask = pseudo_mask(np.array([0, 1, 0, 1]), TISSUE, logits)
    assert (mask[:, :16] == 1).all() and (mask[:, 16:] == 3).all()  # ...so it never wins


def test_white_background_is_ignored():
    image = TISSUE.copy()
    image[:20, :20] = 250  # 400 white pixels >= 250: slide background
    image[30, 30] = 250  # a single bright pixel stays tissue
    mask = pseudo_mask(np.array([1, 0, 0, 0]), image, None)
    assert (mask[:20, :20] == 255).all() and mask[30, 30] == 0 and (mask[25:, :] != 255).all()


def test_unlabelled_image_is_all_ignore():
    assert (pseudo_mask(np.zeros(4, int), TISSUE, None) == 255).all()


def test_multi_label_needs_matching_logits():
    with pytest.raises(ValueError):
        pseudo_mask(np.array([1, 1, 0, 0]), TISSUE, np.zeros((4, 8, 8)))


def test_palette_has_class_colours_and_black_ignore():
    flat = flat_palette(enumerate([(255, 0, 0), (0, 255, 0)]))
    assert len(flat) == 768 and flat[:6] == [255, 0, 0, 0, 255, 0] and flat[765:] == [0, 0, 0]
