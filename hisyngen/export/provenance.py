"""What a published export may say about where it came from.

Text made :func:`publishable` (secrets redacted, this export's local folders without their location),
command lines as :func:`hisyngen.safety.recorded_command` records them, and the command that regenerates
a corpus from its corpus.json. Used by the Hugging Face dataset card (:mod:`hisyngen.export.hf_card`).
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

from hisyngen.export.common import ExportPlan
from hisyngen.safety import recorded_command, redact


def public_tree(value: Any, plan: ExportPlan) -> Any:
    """``value`` (nested dicts and lists) with every string :func:`publishable`."""
    if isinstance(value, dict):
        return {key: public_tree(item, plan) for key, item in value.items()}
    if isinstance(value, list):
        return [public_tree(item, plan) for item in value]
    return publishable(value, plan) if isinstance(value, str) else value


def public_command(command: str, plan: ExportPlan) -> str:
    """A command line as :func:`hisyngen.safety.recorded_command` records one: secrets redacted, absolute
    paths as their last component (the program too); text that is no command line made :func:`publishable`."""
    try:
        args = shlex.split(command)
    except ValueError:  # unbalanced quotes: not a command line we can take apart
        args = []
    if not args:
        return publishable(command, plan)
    recorded = recorded_command(args[1:])  # "hisyngen ARGS": the program is ours to name
    return shlex.quote(Path(args[0]).name or args[0]) + recorded[len("hisyngen"):]


def public_value(value: Any) -> Any:
    """A record value for a card table: an absolute path string as its last component."""
    return Path(value).name if isinstance(value, str) and os.path.isabs(value) and len(value) > 1 else value


def publishable(text: str, plan: ExportPlan) -> str:
    """``text`` as a published card may carry it: secrets redacted (:func:`hisyngen.safety.redact`) and the
    local folders of this export (source, corpora, the working and home folders) without their location."""
    text = redact(text)
    shown = {os.path.expanduser("~"): "~", os.getcwd(): "."}
    for folder in (Path(plan.source.root), *(c.folder for c in plan.corpora)):
        for form in (folder.absolute(), folder.resolve()):
            shown[str(form)] = form.name
    # The longest first, so a corpus inside the home folder shows as its name, not as ~/...; a path only
    # where it starts (the text's start, white space, a quote, =, an opening bracket or a separator of a
    # list) and where it ends (a separator, white space, quote or bracket), so /data never matches
    # /database, nor the /tmp/data of /var/tmp/data or of https://host/tmp/data.
    for path in sorted(shown, key=len, reverse=True):
        if os.path.isabs(path) and len(path) > 1:
            text = re.sub(r"(?<![^\s'\"`=(\[{<,;|])" + re.escape(path) + r"(?=$|[/\s'\"`|),;\]])",
                          lambda m: shown[path], text)
    return text


def corpus_command(corpus: Any) -> str:
    """The command line that regenerates ``corpus`` from its corpus.json (parameters that differ from defaults).

    ``hisyngen synth`` for a plain corpus; ``hisyngen filter`` for a filtered one, whose discriminator
    corpus.json identifies only by its hash (the ``DISCRIMINATOR`` placeholder).
    """
    from hisyngen.synthesis import make_strategy

    config = corpus.config
    # The folder name only: a card is published, the local path of the source is nobody's business.
    source = Path(config.source["root"]).name if config.source.get("root") else "SOURCE"
    if config.filter:
        args = ["hisyngen", "filter", source, "-s", config.strategy, "-m", "DISCRIMINATOR", "-n", str(config.count),
                "--seed", str(config.seed)]
        selection = config.filter.get("selection", {})
        args += [f"--selection={selection['mode']}"] if selection else []
        for key in ("oversample", "threshold"):
            if key in selection:
                args += [f"--{key}", str(selection[key])]
        args += ["--no-stratify"] if selection.get("stratify") is False else []
        if selection.get("mode") == "rank":  # recorded only when on (older rank corpora: without it)
            args += ["--match-area" if selection.get("match_area") else "--no-match-area"]
        if "batch_size" in config.filter:
            args += ["--batch-size", str(config.filter["batch_size"])]
        args += ["-o", corpus.folder.name]
    else:
        args = ["hisyngen", "synth", source, "-s", config.strategy, "-n", str(config.count), "--seed", str(config.seed),
                "-o", corpus.folder.name]
    defaults = make_strategy(config.strategy).params()
    options = {"size": "--size", "background_policy": "--background-policy", "max_background": "--max-background"}
    for key, value in config.params.items():
        if value == defaults.get(key):
            continue
        if key == "allow_missing_classes":
            args.append("--allow-missing-classes")
        elif key in options:
            args += [options[key], str(value)]
        elif key == "pairs":
            pairs = ",".join(f"{corpus.spec.classes[a]}:{corpus.spec.classes[b]}" for a, b in value)
            args += ["-p", f"pairs={pairs}"]
        else:
            text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
            args += ["-p", f"{key}={text}"]
    return shlex.join(args)
