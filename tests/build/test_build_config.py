"""The build configuration's schema (hisyngen/build/config.py): one home per default, strict
types, stored settings that older build folders still match, and no library import of the CLI."""

import ast
import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from hisyngen.build import Build, load_config
from hisyngen.build.config import STRATEGY_KEYS, TRAIN_KEYS, defaults, merge_config
from hisyngen.errors import HisynError
from hisyngen.spec import get_spec, paper_count, paper_epochs

from fixtures import write_benchmark

# OUT/build.yaml as hisyngen wrote it before the configuration became a schema (default settings):
# a rerun of such a folder must still be accepted.
STORED_BEFORE = """\
count: null
dataset: null
discriminator:
  batch_size: 256
  epochs: null
  image_size: 224
  lr: 0.001
  match_classes: true
  min_steps_per_epoch: 8
  negatives: 1000
  num_workers: 0
  real_from: multi
  val_fraction: 0.2
export:
  formats:
  - mmseg
  - hf
  license: null
  tags: []
filter: true
filter_batch_size: 64
oversample: 5.0
precision: auto
realism:
  enabled: true
  epochs: 3
  image_size: 224
  max_images: 500
seed: 0
selection: rank
source: SOURCE
spec: null
strategies:
- mosaic
- bezier
stratify: true
synthesis:
  allow_missing_classes: false
  background_policy: ignore
  max_background: 0.8
  params: {}
  size: 224
threshold: 0.5
"""


def test_a_build_folder_stored_before_the_schema_is_accepted(tmp_path):
    labels = [(1, 0, 0, 0)] * 2 + [(0, 1, 0, 0)] * 2 + [(0, 0, 1, 0)] * 2 + [(0, 0, 0, 1)] * 2 + [(1, 1, 0, 0)] * 4
    root = write_benchmark(tmp_path / "src", get_spec("bcss-wsss"), labels, style="run", n_val=1, n_test=1, size=32)
    out = tmp_path / "b"
    out.mkdir()
    (out / "build.yaml").write_text(STORED_BEFORE.replace("SOURCE", str(Path(root).resolve())))
    # it was selected without area matching (it predates the setting): refused with today's default,
    # accepted with the setting it had
    with pytest.raises(HisynError, match="other settings.*match_area: False vs True"):
        Build(root, out, load_config(None, {}), log=lambda m: None).prepare()
    Build(root, out, load_config(None, {"match_area": False}), log=lambda m: None).prepare()
    with pytest.raises(HisynError, match="other settings.*seed: 0 vs 3"):
        Build(root, out, load_config(None, {"seed": 3, "match_area": False}), log=lambda m: None).prepare()


def test_an_older_threshold_build_reruns_with_its_settings(tmp_path):
    # match_area decides nothing in a threshold build: an older one (no key) reruns as it was
    labels = [(1, 0, 0, 0)] * 2 + [(0, 1, 0, 0)] * 2 + [(0, 0, 1, 0)] * 2 + [(0, 0, 0, 1)] * 2 + [(1, 1, 0, 0)] * 4
    root = write_benchmark(tmp_path / "src", get_spec("bcss-wsss"), labels, style="run", n_val=1, n_test=1, size=32)
    out = tmp_path / "b"
    out.mkdir()
    stored = STORED_BEFORE.replace("SOURCE", str(Path(root).resolve())).replace("selection: rank", "selection: threshold")
    assert "selection: threshold" in stored and "stratify: true" in stored
    (out / "build.yaml").write_text(stored.replace("stratify: true", "stratify: false"))
    Build(root, out, load_config(None, {"selection": "threshold", "stratify": False}), log=lambda m: None).prepare()


def test_sections_borrow_the_library_fields():
    from hisyngen.filtering.train import TrainConfig
    from hisyngen.synthesis import Strategy

    config = defaults()
    train = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    assert {k: config["discriminator"][k] for k in TRAIN_KEYS} == {k: train[k] for k in TRAIN_KEYS}
    strategy = {f.name: f.default for f in dataclasses.fields(Strategy)}
    assert {k: config["synthesis"][k] for k in STRATEGY_KEYS} == {k: strategy[k] for k in STRATEGY_KEYS}


def test_null_only_where_the_default_is_null():
    assert merge_config(defaults(), {"discriminator": {"epochs": None}})["discriminator"]["epochs"] is None
    assert merge_config(defaults(), {"count": None})["count"] is None
    with pytest.raises(HisynError, match="realism.epochs: needs a value"):  # used to crash in TrainConfig
        load_config(None, {"realism": {"epochs": None}})
    with pytest.raises(HisynError, match=r"count: 1\.5 is not valid; expected an integer \(or null"):
        load_config(None, {"count": 1.5})
    with pytest.raises(HisynError, match=r"realism.epochs: 1\.5 is not valid; expected an integer$"):
        load_config(None, {"realism": {"epochs": 1.5}})
    with pytest.raises(HisynError, match="realism must be a mapping"):
        load_config(None, {"realism": False})


def test_help_and_notes_quote_the_papers_numbers():
    assert (paper_count("bcss-wsss"), paper_count("wsss4luad"), paper_count("my-spec")) == (7200, 3600, 3600)
    assert (paper_epochs("bcss-wsss", "mosaic"), paper_epochs("bcss-wsss", "bezier")) == (3, 5)
    from hisyngen.cli import cli

    assert "[default: 7200 for BCSS-WSSS, else 3600]" in " ".join(CliRunner().invoke(cli, ["build", "--help"]).output.split())
    text = CliRunner().invoke(cli, ["build", "--print-config"]).output
    assert "epochs: null  # null: 5, or 3 for BCSS-WSSS Mosaic (the paper)" in text


def test_no_library_module_imports_the_cli():
    package = Path(__file__).resolve().parents[2] / "hisyngen"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel.startswith("cli/") or rel == "__main__.py":  # the CLI itself and its entry point
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{rel}: {n}" for n in names if n == "hisyngen.cli" or n.startswith("hisyngen.cli.")]
    assert offenders == []
