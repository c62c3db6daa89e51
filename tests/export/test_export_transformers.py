"""The ecosystem's own trainer uses the Hugging Face export: a tiny transformers SegFormer learns from it.

The model is randomly initialised from a SegformerConfig built here (no download); the data comes
through ``datasets.load_dataset`` exactly as the stock semantic-segmentation example reads it: the
default subset's ``image``/``label`` columns, its ``validation`` split and ``id2label.json``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from hisyngen.export import export_dataset
from hisyngen.spec import IGNORE_INDEX

from export_fixtures import load_hf, make_corpora, make_source

transformers = pytest.importorskip(
    "transformers", reason="transformers is in the `test` extra: pip install -e '.[test]'")


def tiny_segformer(num_labels: int, id2label: dict[int, str]):
    """A two-stage SegFormer of a few thousand parameters, randomly initialised, deterministic (no dropout)."""
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    config = SegformerConfig(
        num_labels=num_labels, id2label=id2label, label2id={v: k for k, v in id2label.items()},
        semantic_loss_ignore_index=IGNORE_INDEX,
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32], num_attention_heads=[1, 2],
        patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2], decoder_hidden_size=32,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout_prob=0.0, drop_path_rate=0.0,
    )
    torch.manual_seed(0)
    return SegformerForSemanticSegmentation(config)


def test_a_tiny_segformer_trains_on_the_exported_dataset(tmp_path, monkeypatch):
    import torch
    from datasets import concatenate_datasets

    torch.set_num_threads(1)
    source = make_source(tmp_path / "src")
    export_dataset(make_corpora(source, tmp_path, count=8), source, "hf", tmp_path / "hf")
    pairs = load_hf(tmp_path / "hf", tmp_path / "cache", monkeypatch)
    assert {"train", "validation"} <= set(pairs) and {"image", "label"} <= set(pairs["train"].column_names)
    id2label = {int(k): v for k, v in json.loads((tmp_path / "hf" / "id2label.json").read_text()).items()}

    # Preprocessed as the stock example does: RGB pixels, the palette mask's class indices as labels.
    # Every split of the default subset is image/mask pairs, so all of them can feed the trainer (the
    # real validation/test images also put ignore pixels, the source background, into the batch).
    rows = concatenate_datasets(list(pairs.values()))
    assert len(rows) == 16 + 2 + 2
    images = np.stack([np.array(row["image"].convert("RGB")) for row in rows])
    masks = np.stack([np.array(row["label"]) for row in rows])
    assert (masks == IGNORE_INDEX).any() and set(np.unique(masks)) <= {*id2label, IGNORE_INDEX}
    pixel_values = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    labels = torch.from_numpy(masks).long()

    model = tiny_segformer(len(id2label), id2label)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def loss() -> float:
        model.eval()
        with torch.no_grad():
            return model(pixel_values=pixel_values, labels=labels).loss.item()

    # A label of 255 is out of range for the cross-entropy unless it is the ignore index: a wrong one raises.
    before = loss()
    model.train()
    for _ in range(30):
        optimizer.zero_grad()
        model(pixel_values=pixel_values, labels=labels).loss.backward()
        optimizer.step()
    after = loss()
    assert np.isfinite(before) and after < 0.7 * before, (before, after)
