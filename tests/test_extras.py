"""The core install works without OpenMMLab; the commands that need it say which extra to install."""

import json
import subprocess
import sys
import textwrap

from fixtures import needs_openmmlab

# Runs in a fresh interpreter in which mmseg, mmengine and mmcv cannot be imported (as after
# `pip install hisyngen` without extras), whatever this environment has installed.
BLOCKED = textwrap.dedent('''
    import json, sys

    attempts = []

    class NotInstalled:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in ("mmseg", "mmengine", "mmcv"):
                attempts.append(name)
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    from click.testing import CliRunner

    import hisyngen.cli, hisyngen.build.stages, hisyngen.build.report, hisyngen.demo_training, hisyngen.export
    import hisyngen.export.push, hisyngen.sources.demo
    import hisyngen.filtering.filter, hisyngen.filtering.realism, hisyngen.filtering.train
    at_import = list(attempts)
    out = {"at_import": at_import}
    for args in (["demo", "--help"], ["build", "--help"], ["train", "--help"], ["train", "smoke"],
                 ["test", "smoke", "x.pth"], ["pseudo-label", "smoke", "x.pth", "--source", "x"]):
        result = CliRunner().invoke(hisyngen.cli.cli, args)
        out[" ".join(args)] = [result.exit_code, result.output]
    from pathlib import Path
    out["train_commands"] = hisyngen.build.report.train_commands("bcss-wsss", Path("exports/mmseg"), Path("train"))
    try:
        import hisyngen.mmseg
    except ImportError as exc:
        out["plugin"] = str(exc)
    print(json.dumps(out))
''')


def run_blocked() -> dict:
    done = subprocess.run([sys.executable, "-c", BLOCKED], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_core_commands_need_no_openmmlab_and_training_names_the_extra():
    out = run_blocked()
    assert out["at_import"] == []  # not even tried: nothing in the core path imports them
    for args in ("demo --help", "build --help", "train --help"):
        code, text = out[args]
        assert code == 0 and "Usage:" in text, (args, text)
    for command, args in (("train", "train smoke"), ("test", "test smoke x.pth"),
                          ("pseudo-label", "pseudo-label smoke x.pth --source x")):
        code, text = out[args]
        assert code == 1 and text.count("\n") == 1, text  # one line, no traceback
        assert text.startswith(f"error: hisyngen {command} needs MMSegmentation (mmseg, mmengine, mmcv not installed)")
        assert "'hisyngen[mmseg-cpu]'" in text and "'hisyngen[mmseg]' plus the full mmcv" in text
    commands = out["train_commands"]
    assert commands["train_command"].startswith("hisyngen train ") and commands["stock_train_command"] is None
    paper = next(c for c in commands["train_commands"] if c["device"] == "gpu")
    # no mmengine, no way to read the config's weights: the printed R50-D8 command stays offline-safe
    assert paper["command"].startswith("hisyngen train deeplabv3plus_r50-d8_bcss-wsss --data-root ")
    assert "--no-pretrained" in paper["command"]
    assert out["plugin"].startswith("hisyngen.mmseg needs MMSegmentation") and "mmseg-cpu" in out["plugin"]


def test_build_summary_without_openmmlab_says_how_to_get_the_stock_command():
    from hisyngen.build import render_summary

    summary = {"out": "o", "source": "s", "dataset": "bcss-wsss", "seconds_this_run": 1.0, "strategies": {},
               "exports": {}, "train_command": "hisyngen train x --data-root e", "stock_train_command": None,
               "train_commands": [{"device": "cpu", "label": "l", "command": "hisyngen train x --data-root e",
                                   "work_dir": "w", "note": None}]}
    text = render_summary(summary)
    assert "None" not in text and "hisyngen train x --data-root e" in text
    assert "training needs MMSegmentation: pip install 'hisyngen[mmseg-cpu]'" in text


# A full mmcv: its compiled ``mmcv._ext`` is found (here a stand-in module, provided by a finder).
FULL_MMCV = textwrap.dedent('''
    import importlib.abc, importlib.machinery, sys, types

    class CompiledOps(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return lambda *args, **kwargs: "compiled " + name

    class Loader(importlib.abc.Loader):
        def create_module(self, spec):
            return CompiledOps(spec.name)

        def exec_module(self, module):
            pass

    class FullMmcv:
        def find_spec(self, name, path=None, target=None):
            return importlib.machinery.ModuleSpec(name, Loader()) if name == "mmcv._ext" else None

    sys.meta_path.insert(0, FullMmcv())
    import hisyngen.mmseg  # applies the workarounds, imports mmseg.models and so mmcv.ops
    import mmcv._ext
    from hisyngen.mmseg import compat
    print(type(mmcv._ext).__name__, mmcv._ext.nms(), compat.install_mmcv_ext_stub())
''')


@needs_openmmlab
def test_the_plugin_keeps_a_full_mmcv_s_compiled_ops():
    done = subprocess.run([sys.executable, "-c", FULL_MMCV], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-4:] == ["CompiledOps", "compiled", "nms", "False"]  # not the mmcv-lite stub
