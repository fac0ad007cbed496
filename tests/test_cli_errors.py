"""One error handler for every command: exit 2 for usage, 1 for data errors and failed checks, a one-line
message naming the file, the traceback only with --debug."""

from __future__ import annotations

import pytest

from cxrcurate.cli import main
from cxrcurate.errors import SourceError


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["build-manifest", "--out", str(tmp_path / "o")]) == 2
    assert "--source" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse's own usage errors
        main(["build-manifest"])
    assert exc.value.code == 2


def test_data_errors_exit_1_with_one_line_naming_the_folder(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    assert main(["build-manifest", "--source", f"cohen={missing}", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(SourceError):
        main(["--debug", "build-manifest", "--source", f"cohen={tmp_path / 'nope'}", "--out", str(tmp_path / "o")])
