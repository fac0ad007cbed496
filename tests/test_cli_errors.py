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


@pytest.mark.parametrize("argv", [
    ["build-manifest", "--source", "nope=SRC", "--out", "OUT/nested/o"],          # unknown source: usage error
    ["build-manifest", "--source", "cohen=SRC", "--out", "OUT/nested/o"],         # not cohen's layout: data error
    ["split", "MISSING.parquet", "--out", "OUT/nested/split.parquet"],            # no such manifest
])
def test_a_refused_command_leaves_no_empty_output_folder(tmp_path, capsys, argv):
    (tmp_path / "src").mkdir()
    argv = [a.replace("SRC", str(tmp_path / "src")).replace("OUT", str(tmp_path / "out"))
            .replace("MISSING", str(tmp_path / "missing")) for a in argv]
    assert main(argv) in (1, 2)
    assert "error: " in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # neither --out nor the parents it would have created


def test_a_failed_command_keeps_what_was_already_there(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert main(["build-manifest", "--source", f"cohen={tmp_path}", "--out", str(out)]) == 1
    assert out.is_dir()  # existed before: not ours to remove
