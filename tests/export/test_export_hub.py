"""hisyngen push against a loopback fake Hub, then load_dataset("user/name") back, offline.

huggingface_hub and datasets read HF_ENDPOINT (and HF_HOME, offline flags) at import time, so every
client runs in a subprocess with its own environment; the fake Hub runs in a thread of this process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hisyngen.export import export_dataset
from hisyngen.safety import OWN_FILES
from hisyngen.sources import open_source

from fake_hub import FakeHub
from export_fixtures import make_corpora, make_source

TESTS = Path(__file__).resolve().parents[1]  # tests/, where the helper modules live
TOKEN = "hf_user_token"  # FakeHub's default token of user "user"
# The expected client protocol: if a datasets/huggingface_hub upgrade changes it, this list changes.
PUSH_AND_LOAD_ROUTES = {
    "GET /api/agent-harnesses",
    "POST /api/repos/create",
    "POST /api/validate-yaml",
    "POST /api/datasets/{repo}/preupload/{rev}",
    "POST /datasets/{repo}.git/info/lfs/objects/batch",
    "PUT /_lfs/{oid} (upload href)",
    "POST /api/datasets/{repo}/commit/{rev}",
    "GET /api/datasets/{repo}[/revision/{rev}]",
    "GET /api/datasets/{repo}/tree/{rev}[/{path}]",
    "HEAD /datasets/{repo}/resolve/{rev}/{path}",
    "GET /datasets/{repo}/resolve/{rev}/{path}",
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small HF export (Mosaic + Bezier corpora + real splits), its source and corpora, and an MMSeg one."""
    root = tmp_path_factory.mktemp("hub-inputs")
    source = make_source(root / "src")
    corpora = make_corpora(source, root, count=4)
    export_dataset(corpora, source, "hf", root / "hf", max_shard_bytes=5_000)
    export_dataset(corpora, source, "mmseg", root / "mmseg")
    return root


@pytest.fixture
def hub():
    server = FakeHub().start()
    yield server
    server.stop()


def client_env(tmp_path: Path, endpoint: str, token: str | None = TOKEN) -> dict[str, str]:
    """A clean client environment: fresh HF_HOME, the given endpoint and token, no xet, online."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
    env.update(HF_HOME=str(tmp_path / "hf-home"), HF_ENDPOINT=endpoint, HF_HUB_DISABLE_XET="1",
               OMP_NUM_THREADS="1", PYTHONPATH=str(TESTS))
    if token:
        env["HF_TOKEN"] = token
    return env


def hisyngen(env: dict[str, str], *args: object) -> subprocess.CompletedProcess:
    """Run the export CLI commands in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "hisyngen", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=120)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on exit: connecting is refused


def test_push_then_load_dataset_from_the_fake_hub_round_trips_pixels(exported, hub, tmp_path):
    env = client_env(tmp_path, hub.url)
    pushed = hisyngen(env, "push", exported / "hf", "--repo-id", "user/tiny", "--private")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.strip() == f"pushed {exported / 'hf'} to {hub.url}/datasets/user/tiny"
    repo = hub.repos[("user", "tiny")]
    assert repo.private and repo.owner == "user"
    local = sorted(p.relative_to(exported / "hf").as_posix() for p in (exported / "hf").rglob("*")
                   if p.is_file() and p.name not in OWN_FILES)  # the lock and marker stay local
    assert sorted(repo.branches["main"].files) == local
    assert all(repo.branches["main"].files[p] == (exported / "hf" / p).read_bytes() for p in local)

    load = (
        "import sys; from datasets import load_dataset; from hisyngen.sources import open_source; "
        "from export_fixtures import check_hf_pixels; "
        "ds = load_dataset('user/tiny'); weak = load_dataset('user/tiny', 'weak'); "
        "check_hf_pixels(ds, weak, open_source(sys.argv[1]), sys.argv[2:]); print(ds.num_rows, weak.num_rows)"
    )
    loaded = subprocess.run([sys.executable, "-c", load, exported / "src", exported / "mosaic", exported / "bezier"],
                            env=env, capture_output=True, text=True, timeout=180)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.split() == ["{'train':", "8,", "'validation':", "2,", "'test':", "2}", "{'train':",
                                     f"{len(open_source(exported / 'src').train)}}}"]
    assert hub.unhandled == []
    assert set(hub.calls) == PUSH_AND_LOAD_ROUTES


def test_push_to_a_branch_updates_an_existing_repo(exported, hub, tmp_path):
    env = client_env(tmp_path, hub.url)
    pushed = hisyngen(env, "push", exported / "hf", "--repo-id", "user/tiny", "--revision", "v2")
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.strip().endswith(f"{hub.url}/datasets/user/tiny/tree/v2")
    first = hub.repos[("user", "tiny")].branches["v2"].files
    assert len([p for p in first if p.startswith("weak/train-")]) > 1 and "label2color.json" in first
    # Re-exported with one shard per split: the push must drop the old shards, or `data/train-*` (and
    # `weak/train-*`) loads both.
    source = open_source(exported / "src")
    export_dataset([exported / "mosaic", exported / "bezier"], source, "hf", tmp_path / "hf-one-shard")
    again = hisyngen(env, "push", tmp_path / "hf-one-shard", "--repo-id", "user/tiny", "--revision", "v2")
    assert again.returncode == 0, again.stderr
    files = hub.repos[("user", "tiny")].branches["v2"].files
    assert sorted(p for p in files if p.startswith("data/train-")) == ["data/train-00000-of-00001.parquet"]
    assert sorted(p for p in files if p.startswith("weak/")) == ["weak/train-00000-of-00001.parquet"]
    assert len([p for p in files if p.startswith("data/")]) == 3 and "README.md" in files
    assert hub.repos[("user", "tiny")].branches["main"].files == {}
    assert "POST /api/datasets/{repo}/branch/{branch}" in hub.calls and hub.unhandled == []


def test_a_later_push_with_a_real_license_drops_only_hisyngen_s_license_file(exported, hub, tmp_path):
    env = client_env(tmp_path, hub.url)
    assert hisyngen(env, "push", exported / "hf", "--repo-id", "user/tiny").returncode == 0  # license: other
    files = hub.repos[("user", "tiny")].branches["main"].files
    assert "LICENSE.md" in files
    source = open_source(exported / "src")
    export_dataset([exported / "mosaic"], source, "hf", tmp_path / "hf-cc", license="cc-by-4.0")
    assert not (tmp_path / "hf-cc" / "LICENSE.md").exists()
    pushed = hisyngen(env, "push", tmp_path / "hf-cc", "--repo-id", "user/tiny")
    assert pushed.returncode == 0, pushed.stderr
    assert "LICENSE.md" not in hub.repos[("user", "tiny")].branches["main"].files  # its card now links none
    # a LICENSE.md of the user's own (not hisyngen's words) stays
    hub.repos[("user", "tiny")].branches["main"].files["LICENSE.md"] = b"# My terms\n"
    pushed = hisyngen(env, "push", tmp_path / "hf-cc", "--repo-id", "user/tiny")
    assert pushed.returncode == 0, pushed.stderr
    assert hub.repos[("user", "tiny")].branches["main"].files["LICENSE.md"] == b"# My terms\n"
    assert hub.unhandled == []


def test_push_without_a_token_is_refused(exported, hub, tmp_path):
    result = hisyngen(client_env(tmp_path, hub.url, token=None), "push", exported / "hf", "--repo-id", "user/tiny")
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no Hugging Face token: pass --token, set HF_TOKEN or run `hf auth login`"
    assert hub.calls == []


def test_push_to_an_unreachable_endpoint_is_refused(exported, tmp_path):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    result = hisyngen(client_env(tmp_path, endpoint), "push", exported / "hf", "--repo-id", "user/tiny")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot reach the Hugging Face Hub at {endpoint}")
    assert result.stderr.count("\n") == 1  # one line, no traceback


@pytest.mark.parametrize("private", [False, True])
def test_push_to_a_taken_name_is_refused(exported, hub, tmp_path, private):
    hub.add_repo("other/taken", owner="other", private=private)
    result = hisyngen(client_env(tmp_path, hub.url), "push", exported / "hf", "--repo-id", "other/taken",
                      "--token", TOKEN)
    assert result.returncode == 1
    assert "error: cannot write to dataset other/taken (403): the name is taken" in result.stderr
    assert hub.repos[("other", "taken")].branches["main"].files == {}


def test_private_push_into_an_existing_public_repo_is_refused(exported, hub, tmp_path):
    hub.add_repo("user/public", owner="user", private=False)
    result = hisyngen(client_env(tmp_path, hub.url), "push", exported / "hf", "--repo-id", "user/public", "--private")
    assert result.returncode == 1
    assert "error: dataset user/public already exists and is public; --private would publish" in result.stderr
    assert hub.repos[("user", "public")].branches["main"].files == {} and not hub.repos[("user", "public")].private
    assert "POST /api/datasets/{repo}/commit/{rev}" not in hub.calls


def test_push_with_a_bad_token_or_folder_is_refused(exported, hub, tmp_path):
    env = client_env(tmp_path, hub.url)
    result = hisyngen(env, "push", exported / "hf", "--repo-id", "user/tiny", "--token", "hf_wrong")
    assert result.returncode == 1 and "rejected the token (401)" in result.stderr
    result = hisyngen(env, "push", exported / "mmseg", "--repo-id", "user/tiny")
    assert result.returncode == 1 and "is an MMSeg export; push needs `hisyngen export --format hf`" in result.stderr
    result = hisyngen(env, "push", exported / "src", "--repo-id", "user/tiny")
    assert result.returncode == 1 and "is not a Hugging Face export (no README.md, id2label.json" in result.stderr
    assert "data/*.parquet or weak/*.parquet" in result.stderr
    assert ("user", "tiny") not in hub.repos
