import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hisyngen.cli import cli
from hisyngen.corpus import Corpus
from hisyngen.errors import HisynError
from hisyngen.filtering.data import ImageSet
from hisyngen.filtering.filter import filter_corpus
from hisyngen.filtering.select import Selection
from hisyngen.filtering.realism import frechet_distance, kernel_inception_distance, realism_report
from hisyngen.filtering.train import (
    TrainConfig, binary_metrics, fit, load_discriminator, save_discriminator, seeded_model, train_filter,
)
from hisyngen.imageio import read_mask
from hisyngen.sources import open_source
from hisyngen.spec import get_spec
from hisyngen.synthesis import make_strategy

from fixtures import tissue_image, write_benchmark, write_rgb

LABELS = [(1, 0, 0, 0)] * 3 + [(0, 1, 0, 0)] * 3 + [(0, 0, 1, 0)] * 2 + [(0, 0, 0, 1)] * 2 + [(1, 1, 0, 0)] * 6 + [(0, 1, 1, 0)] * 6


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("src")
    write_benchmark(root, get_spec("bcss-wsss"), LABELS, style="run", n_val=0, n_test=0, size=48)
    return open_source(root)


def random_model(path: Path, strategy: str, classes, image_size: int = 32, seed: int = 0) -> Path:
    """A seeded, untrained discriminator: deterministic scores spread around 0.5."""
    save_discriminator(path, seeded_model(seed), {"strategy": strategy, "classes": list(classes),
                                                  "image_size": image_size, "heldout": {}})
    return path


def toy_sets(folder: Path, n: int = 60) -> tuple[ImageSet, ImageSet]:
    real, fake = [], []
    for i in range(n):
        image = tissue_image(i % 4, (32, 32), seed=i)
        tinted = np.clip(image.astype(int) + [60, -40, -40], 0, 255).astype(np.uint8)
        real.append(write_rgb(folder / f"real{i}.png", tinted))
        fake.append(write_rgb(folder / f"fake{i}.png", image))
    return ImageSet(1, 32, tuple(real)), ImageSet(0, 32, tuple(fake))


def test_discriminator_learns_a_separable_toy_problem(tmp_path):
    real, fake = toy_sets(tmp_path)
    model, report = fit(real, fake, TrainConfig(epochs=4, batch_size=32, image_size=32))
    assert report["heldout"]["accuracy"] > 0.95
    assert report["split"] == {"train": {"real": 48, "synthetic": 48}, "val": {"real": 12, "synthetic": 12}}
    assert len(report["curve"]) == 4 and report["best_epoch"] in range(1, 5)
    assert report["curve"][report["best_epoch"] - 1]["val_accuracy"] == max(p["val_accuracy"] for p in report["curve"])


@pytest.mark.parametrize("workers", [0, 1])
def test_an_unreadable_image_stops_training_with_one_line(tmp_path, workers):
    real, fake = toy_sets(tmp_path, n=8)
    Path(real.paths[3]).write_bytes(Path(real.paths[3]).read_bytes()[:60])  # truncated PNG
    with pytest.raises(HisynError) as caught:  # with workers, too: not torch's multi-line RuntimeError
        fit(real, fake, TrainConfig(epochs=1, batch_size=4, image_size=32, num_workers=workers))
    assert str(caught.value).startswith(f"{real.paths[3]}: ") and "\n" not in str(caught.value)


def test_training_is_deterministic_for_a_seed(tmp_path):
    real, fake = toy_sets(tmp_path, n=12)
    config = TrainConfig(epochs=1, batch_size=8, image_size=32, seed=3)
    a, _ = fit(real, fake, config)
    b, _ = fit(real, fake, config)
    assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_binary_metrics_by_hand():
    p = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1])
    y = np.array([1, 1, 1, 0, 0, 0])
    m = binary_metrics(p, y)
    # predicted real: 0.9, 0.8, 0.6 -> tp 2, fp 1; tn 2, fn 1
    assert m["confusion"] == {"tp": 2, "fp": 1, "tn": 2, "fn": 1}
    assert m["accuracy"] == pytest.approx(4 / 6) and m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3) and m["f1"] == pytest.approx(2 / 3)
    # pairs (pos, neg) ordered correctly: 0.9 > all 3, 0.8 > all 3, 0.3 > 0.2, 0.1 -> 8 of 9
    assert m["roc_auc"] == pytest.approx(8 / 9)


def test_frechet_and_kid_grow_with_the_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 8))
    same = rng.normal(size=(300, 8))
    shifted = rng.normal(size=(300, 8)) + 1.0
    assert frechet_distance(a, same) < 0.3 < 7 < frechet_distance(a, shifted)  # ||shift||^2 = 8
    assert abs(kernel_inception_distance(a, same)[0]) < kernel_inception_distance(a, shifted)[0]


def test_filter_keeps_only_confident_samples_deterministically(source, tmp_path):
    strategy = make_strategy("mosaic", {"size": 48})
    model = random_model(tmp_path / "m" / "model.pt", "mosaic", source.spec.classes)
    runs = []
    for name, workers in (("a", 0), ("b", 1)):
        summary = filter_corpus(source, strategy, model, tmp_path / name, count=12, seed=1,
                                selection=Selection.paper(), batch_size=8, workers=workers)
        assert summary.kept == 12 and 12 <= summary.attempted
        runs.append(list(Corpus(tmp_path / name).rows()))
    assert [r["id"] for r in runs[0]] == [r["id"] for r in runs[1]]
    scores = [r["disc_score"] for r in runs[0]]
    assert all(s > 0.5 for s in scores)
    indices = [r["index"] for r in runs[0]]
    assert indices == sorted(indices) and indices[-1] >= 11
    config = Corpus(tmp_path / "a").config
    assert config.filter["stats"]["attempted"] == indices[-1] + 1
    assert config.filter["selection"] == {"mode": "threshold", "stratify": False, "threshold": 0.5}
    assert sorted(p.name for p in (tmp_path / "a" / "images").iterdir()) == sorted(f"{r['id']}.png" for r in runs[0])
    # candidates are FRESH: their own random stream, never the samples of a corpus with that seed
    # (which a discriminator may have been trained on with --negatives-from)
    from hisyngen.corpus import synthesize

    synthesize(source, strategy, tmp_path / "plain", indices[-1] + 1, seed=1)
    plain = {p.read_bytes() for p in (tmp_path / "plain" / "images").iterdir()}
    assert all(r["id"].startswith("mosaic-filter-s1-") for r in runs[0])
    assert not plain & {(tmp_path / "a" / "images" / f"{r['id']}.png").read_bytes() for r in runs[0]}


@pytest.mark.parametrize("selection, interrupt_at, resumed", [
    (Selection(), 3, 8),                  # rank: while scoring (13 batches of 4 for 10 x 5 candidates)
    (Selection(), 14, 50),                # rank: while writing the kept samples (all scored)
    (Selection.paper(), 2, 4),            # threshold, no quotas (the paper)
    (Selection(mode="threshold"), 4, 12),  # threshold with quotas
])
def test_filter_resumes_an_interrupted_run(source, tmp_path, monkeypatch, selection, interrupt_at, resumed):
    import hisyngen.corpus as corpus_module
    import hisyngen.filtering.filter as filter_module

    strategy = make_strategy("bezier", {"size": 48})
    model = random_model(tmp_path / "model.pt", "bezier", source.spec.classes, seed=2)
    filter_corpus(source, strategy, model, tmp_path / "ref", count=10, seed=0, batch_size=4, workers=0,
                  selection=selection)
    calls = []
    real_write_rows = corpus_module.write_rows

    def write_rows(path, rows):  # every part file (scores and kept chunks) goes through here
        calls.append(path)
        if len(calls) == interrupt_at:
            raise KeyboardInterrupt
        real_write_rows(path, rows)

    monkeypatch.setattr(corpus_module, "write_rows", write_rows)
    monkeypatch.setattr(filter_module, "write_rows", write_rows)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        filter_corpus(source, strategy, model, out, count=10, seed=0, batch_size=4, workers=0, selection=selection)
    assert not (out / "manifest.jsonl").exists()
    monkeypatch.setattr(corpus_module, "write_rows", real_write_rows)
    monkeypatch.setattr(filter_module, "write_rows", real_write_rows)
    summary = filter_corpus(source, strategy, model, out, count=10, seed=0, batch_size=4, workers=0,
                            selection=selection)
    assert summary.resumed_attempts == resumed
    ref = {p.relative_to(tmp_path / "ref").as_posix(): p.read_bytes() for p in (tmp_path / "ref").rglob("*") if p.is_file()}
    got = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert got == ref


def test_rank_filter_keeps_what_area_matching_selects_unless_told_not_to(source, tmp_path, monkeypatch):
    import hisyngen.filtering.filter as filter_module
    from hisyngen.filtering import select

    calls = []

    def spy(strata, scores, count, fractions=None):
        kept = select.select_rank(strata, scores, count, fractions)
        calls.append((fractions, kept))
        return kept

    monkeypatch.setattr(filter_module, "select_rank", spy)
    strategy = make_strategy("bezier", {"size": 48})
    model = random_model(tmp_path / "model.pt", "bezier", source.spec.classes, seed=2)
    for name, selection in (("on", Selection()), ("off", Selection(match_area=False))):
        filter_corpus(source, strategy, model, tmp_path / name, count=10, seed=0, batch_size=4, workers=0,
                      selection=selection)
    (on_fractions, on_kept), (off_fractions, _) = calls
    assert off_fractions is None and len(on_fractions) == 50  # the fractions of every scored candidate
    # the corpus holds exactly the candidates the matched selection kept (candidate index = position)
    assert sorted(r["index"] for r in Corpus(tmp_path / "on").rows()) == on_kept
    assert Corpus(tmp_path / "on").config.filter["selection"]["match_area"] is True
    assert "match_area" not in Corpus(tmp_path / "off").config.filter["selection"]
    # the CLI refuses --match-area where it decides nothing
    for extra in (["--paper", "--match-area"], ["--selection", "threshold", "--no-match-area"]):
        result = CliRunner().invoke(cli, ["filter", str(source.root), "-s", "bezier", "-m", str(model), "-n", "4",
                                          "-o", str(tmp_path / "x"), *extra])
        assert result.exit_code != 0 and "--match-area applies to --selection rank" in result.output


def test_filter_stops_at_the_attempt_guard_with_the_rate(source, tmp_path):
    strategy = make_strategy("mosaic", {"size": 48})
    model = random_model(tmp_path / "model.pt", "mosaic", source.spec.classes)
    # an untrained model keeps about half the candidates: 20 out of 24 attempts is out of reach
    with pytest.raises(HisynError, match=r"stopped after --max-attempts: kept \d+ of 20 from 24 candidates, "
                                         r"acceptance rate \d+\.\d+%") as stop:
        filter_corpus(source, strategy, model, tmp_path / "c", count=20, max_attempts=24, batch_size=8, workers=0,
                      selection=Selection.paper())
    summary = stop.value.summary  # scripts (benchmarks) read how far it got
    assert summary.attempted == 24 and 0 < summary.kept < 20 and summary.scoring_seconds > 0
    assert not (tmp_path / "c" / "manifest.jsonl").exists()


def test_filter_refuses_a_model_trained_with_other_parameters(source, tmp_path):
    model = tmp_path / "m.pt"
    save_discriminator(model, seeded_model(0), {"strategy": "bezier", "classes": list(source.spec.classes),
                                                "image_size": 32, "heldout": {},
                                                "strategy_params": make_strategy("bezier", {"points": 12}).params()})
    with pytest.raises(HisynError, match=r"other parameters \(points=12 there, 5 here\)"):
        filter_corpus(source, make_strategy("bezier"), model, tmp_path / "c", count=4)
    # a switch that does not change the samples is not a difference
    _, meta = load_discriminator(model, strategy="bezier", classes=source.spec.classes,
                                 params=make_strategy("bezier", {"points": 12, "allow_missing_classes": True}).sample_params())
    assert meta["strategy"] == "bezier"


def test_a_hopeless_filter_stops_after_the_probe(source, tmp_path, monkeypatch):
    import hisyngen.filtering.filter as filtering

    monkeypatch.setattr(filtering, "PROBE", 16)
    strategy = make_strategy("mosaic", {"size": 48})
    model = random_model(tmp_path / "model.pt", "mosaic", source.spec.classes)
    # about half the candidates pass: 1,000 would need ~2,000 candidates, the limit is 1,200
    with pytest.raises(HisynError, match=r"stopped at this rate: kept \d+ of 1,000 from 16 candidates") as stop:
        filter_corpus(source, strategy, model, tmp_path / "c", count=1000, max_attempts=1200, batch_size=8, workers=0,
                      selection=Selection.paper())
    assert stop.value.summary.attempted == 16
    # nothing passes at all: the message says so instead of "~inf candidates"
    with pytest.raises(HisynError, match=r"acceptance rate 0\.000%, no candidate scored above --threshold 0\.999999"):
        filter_corpus(source, strategy, model, tmp_path / "c0", count=4, max_attempts=16, batch_size=8, workers=0,
                      selection=Selection.paper(threshold=0.999999))


def test_filter_refuses_bad_models_and_thresholds(source, tmp_path):
    mosaic = make_strategy("mosaic", {"size": 48})
    other = random_model(tmp_path / "bezier.pt", "bezier", source.spec.classes)
    with pytest.raises(HisynError, match="trained on bezier samples, not mosaic"):
        filter_corpus(source, mosaic, other, tmp_path / "c", count=4)
    three = random_model(tmp_path / "three.pt", "mosaic", ("a", "b", "c"))
    with pytest.raises(HisynError, match=r"trained for classes \['a', 'b', 'c'\] \(3\)"):
        filter_corpus(source, mosaic, three, tmp_path / "c", count=4)
    good = random_model(tmp_path / "good.pt", "mosaic", source.spec.classes)
    for threshold in (0.0, 1.0, 1.5):
        with pytest.raises(HisynError, match=r"threshold must be in \(0, 1\)"):
            filter_corpus(source, mosaic, good, tmp_path / "c", count=4, selection=Selection.paper(threshold))
    with pytest.raises(HisynError, match="seed must be >= 0"):
        filter_corpus(source, mosaic, good, tmp_path / "c", count=4, seed=-1)
    with pytest.raises(HisynError, match="is not a device"):
        filter_corpus(source, mosaic, good, tmp_path / "c", count=4, device="tpu9")
    (tmp_path / "junk.pt").write_bytes(b"not a model")
    with pytest.raises(HisynError, match="not a readable discriminator"):
        load_discriminator(tmp_path / "junk.pt")
    assert not (tmp_path / "c").exists()


def test_no_multi_tissue_images_suggests_real_from(tmp_path):
    write_benchmark(tmp_path, get_spec("bcss-wsss"), [(1, 0, 0, 0), (0, 1, 0, 0)] * 3, style="run", n_val=0, n_test=0)
    source = open_source(tmp_path)
    with pytest.raises(HisynError, match="--real-from all"):
        train_filter(source, make_strategy("mosaic"), tmp_path / "m", TrainConfig(epochs=1, image_size=32))


def test_filter_train_cli_writes_model_and_report(source, tmp_path):
    result = CliRunner().invoke(cli, ["filter-train", str(source.root), "-s", "bezier", "-o", str(tmp_path / "d"),
                                      "--negatives", "12", "--epochs", "1", "--batch-size", "8", "--image-size", "32",
                                      "--size", "48", "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    assert report["split"] == {"train": {"real": 10, "synthetic": 10}, "val": {"real": 2, "synthetic": 2}}
    assert set(report["heldout"]) >= {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert len(report["curve"]) == 1 and report["strategy"] == "bezier"
    _, meta = load_discriminator(tmp_path / "d", strategy="bezier", classes=source.spec.classes)
    assert meta["image_size"] == 32 and meta["strategy_params"]["size"] == 48
    result = CliRunner().invoke(cli, ["filter", str(source.root), "-s", "bezier", "-m", str(tmp_path / "d"), "-n", "3",
                                      "-o", str(tmp_path / "kept"), "--size", "48", "-w", "0", "--batch-size", "4",
                                      "--max-attempts", "400", "--paper", "--json", "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["kept"] == 3 and summary["acceptance_rate"] == pytest.approx(3 / summary["attempted"], abs=1e-6)
    assert summary["selection"] == {"mode": "threshold", "stratify": False, "threshold": 0.5}
    result = CliRunner().invoke(cli, ["filter", str(source.root), "-s", "bezier", "-m", str(tmp_path / "d"), "-n", "4",
                                      "-o", str(tmp_path / "ranked"), "--size", "48", "-w", "0", "--batch-size", "4",
                                      "--oversample", "3"])
    assert result.exit_code == 0, result.output
    assert "kept 4 of 12 bezier candidates" in result.output and "class pixel share" in result.output
    result = CliRunner().invoke(cli, ["filter", str(source.root), "-s", "bezier", "-m", str(tmp_path / "d"), "-n", "4",
                                      "-o", str(tmp_path / "x"), "--max-attempts", "40"])
    assert result.exit_code != 0 and "--max-attempts applies to --selection threshold" in result.output
    result = CliRunner().invoke(cli, ["filter", str(source.root), "-s", "bezier", "-m", str(tmp_path / "d"), "-n", "4",
                                      "-o", str(tmp_path / "x"), "--paper", "--selection", "rank"])
    assert result.exit_code != 0 and "--paper is --selection threshold --no-stratify" in result.output
    for row in Corpus(tmp_path / "kept").rows():
        assert set(np.unique(read_mask(tmp_path / "kept" / "masks" / f"{row['id']}.png"))) <= {0, 1, 2, 3, 255}


def test_negatives_from_a_corpus_must_be_unfiltered_samples_of_the_same_parameters(source, tmp_path):
    from hisyngen.corpus import synthesize

    strategy = make_strategy("bezier", {"size": 48})
    synthesize(source, strategy, tmp_path / "neg", 10, seed=0)
    config = TrainConfig(epochs=1, batch_size=8, image_size=32)
    report = train_filter(source, strategy, tmp_path / "d", config, negatives_from=tmp_path / "neg")
    assert report["split"]["train"]["synthetic"] + report["split"]["val"]["synthetic"] == 10
    with pytest.raises(HisynError, match=r"other bezier parameters \(size=48 there, 64 here\)"):
        train_filter(source, make_strategy("bezier", {"size": 64}), tmp_path / "d2", config, negatives_from=tmp_path / "neg")
    corpus_json = tmp_path / "neg" / "corpus.json"
    corpus_json.write_text(json.dumps({**json.loads(corpus_json.read_text()), "filter": {"threshold": 0.5}}))
    with pytest.raises(HisynError, match="is a filtered corpus; the negatives must be unfiltered"):
        train_filter(source, strategy, tmp_path / "d3", config, negatives_from=tmp_path / "neg")


def test_realism_ranks_a_tinted_corpus_as_less_real(tmp_path):
    from hisyngen.corpus import synthesize
    from hisyngen.sources.labels import format_labels

    # Real (multi-tissue) and single-tissue images share one appearance: each class's colour + noise.
    # The plain corpus therefore looks like the real images; the tinted one is shifted towards red.
    def write_source(root, tint):
        for i in range(48):
            cls = i % 4
            labels = [0, 0, 0, 0]
            labels[cls] = 1
            if i >= 16:  # 32 multi-tissue "real" images
                labels[(cls + 1) % 4] = 1
            image = np.clip(tissue_image(cls, (32, 32), seed=i).astype(int) + tint, 0, 255).astype(np.uint8)
            write_rgb(root / "training" / f"img{i:03d}+{i}{format_labels(tuple(labels)).replace(',', '')}.png", image)
        (root / "val").mkdir()
        return open_source(root, dataset="bcss-wsss")

    plain = write_source(tmp_path / "plain", np.array([0, 0, 0]))
    tinted = write_source(tmp_path / "tinted", np.array([60, -40, -40]))
    assert len(plain.multi_tissue()) == 32
    strategy = make_strategy("onelabel", {"size": 32})
    synthesize(plain, strategy, tmp_path / "c-plain", 64, seed=0)
    synthesize(tinted, strategy, tmp_path / "c-tinted", 64, seed=0)
    report = realism_report([tmp_path / "c-plain", tmp_path / "c-tinted"], plain,
                            config=TrainConfig(epochs=3, batch_size=16, image_size=32, val_fraction=0.5))
    by_name = {Path(r["corpus"]).name: r for r in report["corpora"]}
    assert report["real"]["held_out"] == 16 and by_name["c-plain"]["held_out"] == 32
    assert by_name["c-tinted"]["c2st_accuracy"] > by_name["c-plain"]["c2st_accuracy"]
    assert by_name["c-tinted"]["frechet_distance"] > by_name["c-plain"]["frechet_distance"]
    assert by_name["c-tinted"]["kid"] > by_name["c-plain"]["kid"]
    assert by_name["c-tinted"]["colour"]["mean"][0] > by_name["c-plain"]["colour"]["mean"][0] + 40


def test_folded_batchnorm_scores_like_the_trained_model(tmp_path):
    import torch

    from hisyngen.filtering.model import fold_batchnorm

    real, fake = toy_sets(tmp_path, n=16)
    model, _ = fit(real, fake, TrainConfig(epochs=1, batch_size=8, image_size=32))  # trained: non-trivial BN stats
    images = torch.from_numpy(np.stack([real.load(i) for i in range(4)] + [fake.load(i) for i in range(4)]))
    with torch.inference_mode():
        plain, folded = model(images), fold_batchnorm(model)(images)
    assert torch.allclose(plain, folded, atol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fold_batchnorm(model).modules())


def test_class_matched_weights_give_the_synthetic_images_the_real_class_presence():
    from hisyngen.filtering.data import class_matched_weights

    rng = np.random.default_rng(0)
    # Bezier-like synthetic images: one pair of 4 classes each, so each class is in half of them;
    # the real images hold class 2 far less often (it is the rare class of the source)
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    presence = np.zeros((600, 4), int)
    for row, i in zip(presence, rng.integers(0, 6, 600)):
        row[list(pairs[i])] = 1
    target = np.array([0.7, 0.6, 0.2, 0.5])
    weights = class_matched_weights(target, presence)
    assert np.average(presence, axis=0, weights=weights) == pytest.approx(target, abs=0.02)
    assert weights.mean() == pytest.approx(1.0) and weights.max() / weights.min() <= 100 + 1e-9  # clipped
    assert not np.allclose(presence.mean(0), target, atol=0.1)  # the weights did the work


def test_balanced_order_without_weights_is_the_plain_real_synthetic_balance():
    labels = np.array([1] * 5 + [0] * 20)
    old = np.random.default_rng(3).choice(25, size=25, replace=True, p=(w := 1.0 / np.bincount(labels)[labels]) / w.sum())
    from hisyngen.filtering.train import balanced_order

    assert balanced_order(labels, np.random.default_rng(3), True) == [int(i) for i in old]  # same draws as before
    weights = np.ones(25)
    weights[5:15] = 0.0  # synthetic items 5..14 never drawn
    drawn = balanced_order(labels, np.random.default_rng(3), True, weights)
    assert not set(drawn) & set(range(5, 15)) and sum(1 for i in drawn if i < 5) > 6  # real still ~half


def test_filter_train_reports_class_presence_and_per_class_scores(source, tmp_path):
    strategy = make_strategy("bezier", {"size": 48})
    report = train_filter(source, strategy, tmp_path / "d", TrainConfig(epochs=1, batch_size=8, image_size=32),
                          negatives=16)
    assert set(report["heldout_per_class"]) == set(source.spec.classes)
    assert all({"real", "synthetic", "n_real", "n_synthetic"} <= set(v) for v in report["heldout_per_class"].values())
    presence = report["class_presence"]
    assert len(presence["real"]) == 4 and presence["synthetic_after"] != presence["synthetic_before"]
    off = train_filter(source, strategy, tmp_path / "p", TrainConfig(epochs=1, batch_size=8, image_size=32,
                                                                     match_classes=False), negatives=16)
    assert off["class_presence"] is None and off["config"]["match_classes"] is False


def torchvision_resnet18_shapes() -> dict[str, tuple[int, ...]]:
    """Names and shapes of ``torchvision.models.resnet18().state_dict()``, in its order, spelled out
    here (torchvision is not installed): conv1, bn1, layer1..layer4 of two BasicBlocks, fc (1,000)."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}

    def bn(name, channels):
        shapes.update({f"{name}.{k}": (channels,) for k in ("weight", "bias", "running_mean", "running_var")})
        shapes[f"{name}.num_batches_tracked"] = ()

    bn("bn1", 64)
    before = 64
    for index, (width, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
        for block in range(2):
            name, into = f"layer{index}.{block}", before if block == 0 else width
            shapes[f"{name}.conv1.weight"] = (width, into, 3, 3)
            bn(f"{name}.bn1", width)
            shapes[f"{name}.conv2.weight"] = (width, width, 3, 3)
            bn(f"{name}.bn2", width)
            if block == 0 and (stride != 1 or into != width):
                shapes[f"{name}.downsample.0.weight"] = (width, into, 1, 1)
                bn(f"{name}.downsample.1", width)
        before = width
    shapes.update({"fc.weight": (1000, 512), "fc.bias": (1000,)})
    return shapes


def imagenet_like_checkpoint(path: Path, drop: tuple[str, ...] = (), add: tuple[str, ...] = ()) -> Path:
    """A file shaped like torchvision's resnet18 ImageNet checkpoint (a flat state dict; random values,
    no num_batches_tracked counters, as in the older torchvision files)."""
    import torch

    generator = torch.Generator().manual_seed(7)
    state = {k: torch.rand(shape, generator=generator) for k, shape in torchvision_resnet18_shapes().items()
             if not k.endswith("num_batches_tracked") and k not in drop}
    state.update({k: torch.zeros(3) for k in add})
    torch.save(state, path)
    return path


def test_discriminator_parameters_are_named_as_torchvision_resnet18():
    state = seeded_model(0).state_dict()
    expected = torchvision_resnet18_shapes()
    assert list(state) == list(expected)  # same names, same order
    assert {k: tuple(v.shape) for k, v in state.items() if not k.startswith("fc.")} == \
        {k: v for k, v in expected.items() if not k.startswith("fc.")}
    assert tuple(state["fc.weight"].shape) == (2, 512)  # real vs synthetic


def test_init_from_starts_from_imagenet_weights_but_its_own_head(tmp_path):
    import torch

    from hisyngen.filtering.train import initial_model

    checkpoint = torch.load(imagenet_like_checkpoint(tmp_path / "resnet18-imagenet.pth"), weights_only=True)
    model = initial_model(TrainConfig(init_from=str(tmp_path / "resnet18-imagenet.pth"), seed=4))
    seeded = seeded_model(4).state_dict()
    for key, value in model.state_dict().items():
        if key.startswith("fc."):
            assert torch.equal(value, seeded[key])  # the 2-way head: seeded, not ImageNet's 1,000 classes
        elif key.endswith("num_batches_tracked"):
            assert int(value) == 0
        else:
            assert torch.equal(value, checkpoint[key]), key
    # the same file and seed train the same weights
    real, fake = toy_sets(tmp_path, n=12)
    config = TrainConfig(epochs=1, batch_size=8, image_size=32, init_from=str(tmp_path / "resnet18-imagenet.pth"))
    a, b = fit(real, fake, config)[0], fit(real, fake, config)[0]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.state_dict()["conv1.weight"], fit(real, fake, replace_init(config, None))[0].state_dict()["conv1.weight"])


def replace_init(config: TrainConfig, init_from):
    from dataclasses import replace

    return replace(config, init_from=init_from)


def test_filter_train_init_from_refuses_other_weights_in_one_line(source, tmp_path):
    import pickle

    args = ["filter-train", str(source.root), "-s", "bezier", "-o", str(tmp_path / "d"), "--negatives", "8",
            "--epochs", "1", "--batch-size", "8", "--image-size", "32", "--size", "48", "-q"]
    good = imagenet_like_checkpoint(tmp_path / "good.pth")
    result = CliRunner().invoke(cli, [*args, "--init-from", str(good)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    assert report["config"]["init_from"] == str(good) and len(report["init_from_sha256"]) == 64
    bad = imagenet_like_checkpoint(tmp_path / "bad.pth", drop=("layer1.0.conv1.weight",), add=("layer5.0.conv1.weight",))
    result = CliRunner().invoke(cli, [*args, "--init-from", str(bad)])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output == (f"error: --init-from {bad}: not ResNet-18 weights named as torchvision's resnet18: "
                             "missing 1 (layer1.0.conv1.weight); unexpected 1 (layer5.0.conv1.weight)\n")
    pickled = tmp_path / "code.pth"
    pickled.write_bytes(pickle.dumps({"conv1.weight": Path("x")}, protocol=2))  # an object, not a tensor: never unpickled
    result = CliRunner().invoke(cli, [*args, "--init-from", str(pickled)])
    assert result.exit_code == 1 and "not a checkpoint torch.load(weights_only=True) reads" in result.output
    assert result.output.count("\n") == 1


def test_version1_discriminator_files_load_and_score_the_same(source, tmp_path):
    import io

    import torch

    from hisyngen.filtering.model import IMAGENET_MEAN, IMAGENET_STD

    model = seeded_model(5).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a mixed-up name would show
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    # the names discriminators were saved with before they were torchvision's (model version 1)
    renames = [("conv1.", "stem.0."), ("bn1.", "stem.1."), ("layer1.", "stages.0."), ("layer2.", "stages.1."),
               ("layer3.", "stages.2."), ("layer4.", "stages.3."), ("fc.", "head.")]
    legacy = {"mean": torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), "std": torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)}
    for key, value in model.state_dict().items():
        new, old = next((n, o) for n, o in renames if key.startswith(n))
        legacy[old + key[len(new):]] = value
    buffer = io.BytesIO()
    torch.save({"format": "hisyngen-discriminator", "version": 1, "state_dict": legacy,
                "meta": {"strategy": "bezier", "classes": list(source.spec.classes), "image_size": 32, "heldout": {}}}, buffer)
    (tmp_path / "v1.pt").write_bytes(buffer.getvalue())
    loaded, _ = load_discriminator(tmp_path / "v1.pt", strategy="bezier")
    images = torch.from_numpy(np.stack([tissue_image(i % 4, (32, 32), seed=i) for i in range(6)]))
    with torch.inference_mode():
        assert torch.equal(loaded(images), model(images))
    # a discriminator file can also start a new one (--init-from), with the old names too
    from hisyngen.filtering.train import initial_model

    started = initial_model(TrainConfig(init_from=str(tmp_path / "v1.pt")))
    assert torch.equal(started.state_dict()["layer4.1.bn2.running_var"], model.state_dict()["layer4.1.bn2.running_var"])


def test_batchnorm_recalibration_averages_the_batch_statistics(tmp_path):
    import torch

    from hisyngen.filtering.data import LabelledImages
    from hisyngen.filtering.train import recalibrate_batchnorm, resolve_device

    real, fake = toy_sets(tmp_path, n=6)
    dataset = LabelledImages([real, fake], [(s, i) for s in (0, 1) for i in range(6)])
    model = seeded_model(1)
    recalibrate_batchnorm(model, dataset, list(range(12)), 4, resolve_device("cpu"))
    assert model.bn1.momentum == 0.1 and model.training  # restored
    images = torch.from_numpy(np.stack([dataset[i][0] for i in range(12)]))
    with torch.no_grad():
        stem = model.conv1(model.prepare(images))  # what bn1 normalises, batch by batch (3 batches of 4)
    batch_means = torch.stack([stem[i:i + 4].mean(dim=(0, 2, 3)) for i in (0, 4, 8)])
    assert torch.allclose(model.bn1.running_mean, batch_means.mean(0), atol=1e-5)
    assert int(model.bn1.num_batches_tracked) == 3


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")  # 300 features: small
def test_frechet_distance_and_kid_agree_with_torchmetrics():
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance  # the [test] extra; torch only, no torchvision
    from torchmetrics.image.kid import KernelInceptionDistance

    class Given(torch.nn.Module):  # the "images" are the features themselves
        num_features = 24

        def forward(self, x):
            return x

    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(24, 24)) / 5
    real = np.maximum(rng.normal(size=(300, 24)) @ mixing + 0.3, 0)  # ReLU-like, correlated, as pooled features are
    fake = np.maximum(rng.normal(size=(300, 24)) @ (mixing * 1.3) + 0.5, 0)
    fid = FrechetInceptionDistance(feature=Given())
    fid.update(torch.from_numpy(real), real=True)
    fid.update(torch.from_numpy(fake), real=False)
    assert frechet_distance(real, fake) == pytest.approx(float(fid.compute()), rel=1e-6)
    # KID over all images (one subset of every image), so no random subsets differ between the two
    kid = KernelInceptionDistance(feature=Given(), subsets=1, subset_size=300)
    kid.update(torch.from_numpy(real), real=True)
    kid.update(torch.from_numpy(fake), real=False)
    theirs, _ = kid.compute()
    ours, _ = kernel_inception_distance(real, fake, subsets=3, subset_size=300)
    assert ours == pytest.approx(float(theirs), rel=1e-9)
