"""Every option of every command says what it does: the argparse tree is walked, and an option (or positional
argument) without help text fails, naming the command and the option."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from cxrcurate.cli import build_parser


def _walk(parser: argparse.ArgumentParser, path: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_cli_option_has_help_text():
    missing = [f"{path}: {'/'.join(a.option_strings) or a.dest}" for path, a in _walk(build_parser(), "cxrcurate")
               if not a.help and a.help is not argparse.SUPPRESS]
    assert not missing, "options without help text:\n" + "\n".join(missing)


def test_the_walk_sees_every_command():
    commands = {path for path, _ in _walk(build_parser(), "cxrcurate")}
    assert {"cxrcurate stats", "cxrcurate bench", "cxrcurate release build", "cxrcurate fetch"} <= commands


def test_stats_help_explains_every_column():
    from cxrcurate.stats import LEGEND

    text = build_parser()._subparsers._group_actions[0].choices["stats"].format_help()
    for column in ("kept", "units", "patients_unknown", "pediatric_unknown", "pediatric_share"):
        assert f"{column}: " in text and column in LEGEND


def test_models_is_fast_and_narrow():
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "cxrcurate.cli", "models"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if "|" in line}
    assert "torch" not in imported and "timm" not in imported, "the static table must not import torch"
    assert max(len(line) for line in out.stdout.splitlines()) <= 120, out.stdout
    assert "cxnet" in out.stdout
    assert time.perf_counter() - started < 60
