"""Progress output: tqdm bars on a terminal, plain periodic lines in cluster logs (hisyngen.progress)."""

import io
import re
from pathlib import Path

import pytest

import hisyngen
from hisyngen.errors import HisynError
from hisyngen.progress import LOG_EVERY_PERCENT, PROGRESS_ENV, progress_bar

PERCENT = re.compile(r"^work: (\d+)% \(")


class FakeTerminal(io.StringIO):
    """A stderr that says it is a tty."""

    def isatty(self) -> bool:
        return True


class CapturedStderr:
    """What was written to stderr so far: pytest's capture, a plain (non-tty) stream like a SLURM log."""

    def __init__(self, capsys):
        self.capsys, self.text = capsys, ""

    def getvalue(self) -> str:
        self.text += self.capsys.readouterr().err
        return self.text


@pytest.fixture
def stderr(monkeypatch, capsys):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    return CapturedStderr(capsys)


def percents(text):
    return [int(m.group(1)) for m in map(PERCENT.match, text.splitlines()) if m]


def test_without_a_terminal_lines_every_few_percent_and_no_carriage_returns(stderr):
    assert sum(1 for _ in progress_bar(range(200), desc="work", unit="img")) == 200
    out = stderr.getvalue()
    assert "\r" not in out
    assert percents(out) == list(range(0, 101, LOG_EVERY_PERCENT))  # the start, then every 10%
    assert out.splitlines()[-1].startswith("work: 100% (200/200 img), ")


def test_updates_resume_and_postfix_as_lines(stderr):
    with progress_bar(total=200, initial=50, desc="work", unit="img") as bar:
        for _ in range(5):
            bar.update(30)
            bar.set_postfix_str("acceptance 12.5%")
        assert bar.n == 200
    out = stderr.getvalue()
    # resumed at 25%; 40% and 55% each pass a step (30%, 50%); 70, 85 and 100 likewise
    assert percents(out) == [25, 40, 55, 70, 85, 100]
    assert out.splitlines()[-1].endswith(", acceptance 12.5%") and "\r" not in out


def test_a_task_stopping_early_still_logs_where_it_stopped(stderr):
    bar = progress_bar(total=1000, desc="work")
    bar.update(7)
    bar.set_postfix(loss="0.123", acc="0.900")
    bar.close()
    bar.close()
    assert percents(stderr.getvalue()) == [0, 0]  # started, stopped at 7 (< 10%): one line each
    assert stderr.getvalue().splitlines()[-1].startswith("work: 0% (7/1,000 it)")
    assert stderr.getvalue().splitlines()[-1].endswith("loss=0.123, acc=0.900")


def test_a_terminal_gets_a_bar(monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    monkeypatch.setattr("sys.stderr", terminal := FakeTerminal())
    list(progress_bar(range(50), desc="work", mininterval=0))
    assert "\r" in terminal.getvalue() and not percents(terminal.getvalue())


def test_the_environment_variable_forces_either_way(monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, "1")  # a bar in a log file: asked for
    monkeypatch.setattr("sys.stderr", log := io.StringIO())
    list(progress_bar(range(50), desc="work", mininterval=0))
    assert "\r" in log.getvalue()

    monkeypatch.setenv(PROGRESS_ENV, "0")  # lines on a terminal: asked for
    monkeypatch.setattr("sys.stderr", terminal := FakeTerminal())
    list(progress_bar(range(50), desc="work"))
    assert "\r" not in terminal.getvalue() and percents(terminal.getvalue())[-1] == 100

    monkeypatch.setenv(PROGRESS_ENV, "yes please")
    with pytest.raises(HisynError, match=f"{PROGRESS_ENV}='yes please' must be 1 .* or 0"):
        progress_bar(range(3))


def test_disabled_writes_nothing(stderr):
    with progress_bar(total=10, disable=True) as bar:
        bar.update(10)
    assert list(progress_bar([1, 2], disable=True)) == [1, 2] and stderr.getvalue() == ""


def test_every_bar_in_the_package_goes_through_the_helper():
    package = Path(hisyngen.__file__).parent
    direct = [str(path.relative_to(package)) for path in package.rglob("*.py")
              if path.name != "progress.py" and re.search(r"^\s*(from tqdm|import tqdm)", path.read_text(), re.M)]
    assert direct == []


def test_a_real_call_site_logs_lines_in_a_cluster_log(stderr, tmp_path):
    from fixtures import write_benchmark

    from hisyngen.sources import build_pool_pack, open_source
    from hisyngen.spec import get_spec

    labels = [(1, 0, 0, 0), (0, 1, 0, 0), (0, 0, 1, 0), (0, 0, 0, 1)] * 3
    write_benchmark(tmp_path / "data", get_spec("bcss-wsss"), labels, style="run")
    build_pool_pack(open_source(tmp_path / "data"), cache_dir=tmp_path / "cache", progress=True)
    out = stderr.getvalue()
    assert "\r" not in out and "decoding single-tissue pool: 100% (12/12 img)" in out


def test_a_bad_progress_setting_is_refused_when_the_command_starts(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from hisyngen.cli import cli

    monkeypatch.setenv(PROGRESS_ENV, "yes")
    result = CliRunner().invoke(cli, ["inspect", str(tmp_path / "missing")])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output.startswith(f"error: {PROGRESS_ENV}='yes' must be 1 (progress bars) or 0")
