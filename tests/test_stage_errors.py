"""A stage that cannot write its outputs: one `error:` line naming the output (not a temporary name), exit code 1,
and the previous outputs as they were (labelbench.data.files: stage_main, atomic_outputs and its atomic_path, atomic_dir)."""

from __future__ import annotations

import errno
import os

import pandas as pd
import pytest

from conftest import load_stage
from test_train import write_params
from labelbench.data import files
from labelbench.data.files import DataError, atomic_dir, atomic_outputs, atomic_path, write_json


def labels_csv(folder):
    path = folder / "labels.csv"
    pd.DataFrame({"image_id": [f"{i}.png" for i in range(12)], "given_label": [i % 2 for i in range(12)],
                  "true_label": "", "label_error": ""}).to_csv(path, index=False)
    return path


def test_a_stage_that_cannot_write_its_output_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    write_params(tmp_path, {"crossval.folds": [0, 1, 2], "crossval.fold_seed": 0})
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocked").write_text("a file where the output's folder should be")
    assert load_stage("folds").main(["--in", str(labels_csv(tmp_path)), "--out", "blocked/folds.csv"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: blocked/folds.csv: cannot be written"), err
    assert "Traceback" not in "".join(err)


def test_running_out_of_memory_is_one_line_not_a_traceback(capsys):
    """numpy's allocation error (a params value too large for this machine) as one `error:` line, exit code 1."""
    import numpy as np

    from labelbench.data.files import stage_main

    @stage_main
    def main(argv=None):
        np.empty(2**50, dtype=np.uint8)  # 1 PiB: more than any address space here

    assert main([]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: Unable to allocate"), err


def test_a_failed_rename_keeps_the_old_file_and_names_the_output(tmp_path, monkeypatch):
    target = tmp_path / "out" / "table.json"
    write_json(target, {"a": 1})
    before = target.read_bytes()

    def refuse(src, dst):
        raise OSError(30, "Read-only file system", str(src))

    monkeypatch.setattr(files.os, "replace", refuse)
    with pytest.raises(DataError, match=r"out/table.json: cannot be written \(Read-only file system\)"):
        with atomic_path(target) as tmp:
            tmp.write_text("new")
    assert target.read_bytes() == before
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.json"]


def test_a_folder_whose_new_copy_cannot_be_moved_in_keeps_the_old_one(tmp_path, monkeypatch):
    out = tmp_path / "scores"
    out.mkdir()
    (out / "old.csv").write_text("old")
    real_replace = os.replace

    def second_fails(src, dst):  # the old folder moves aside, the new one cannot move in
        if str(src).endswith(".tmp"):
            raise OSError(16, "Device or resource busy", str(src))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", second_fails)
    with pytest.raises(DataError, match="scores: cannot be written"):
        with atomic_dir(out) as tmp:
            (tmp / "new.csv").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores"]  # no temporary or `.old` folder left
    assert (out / "old.csv").read_text() == "old"


def test_a_read_error_inside_the_block_is_not_blamed_on_the_output(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_dir(tmp_path / "out"):
            (tmp_path.parent / "elsewhere" / "absent.png").read_bytes()


def test_a_file_where_a_folder_is_written_or_the_reverse_is_refused_and_kept(tmp_path):
    """A mistyped output path (`stages/issues.py --out README.md`, `--scores` naming a folder of your own files)
    would otherwise be replaced: refused before the block runs, naming it; nothing is changed or left behind."""
    (tmp_path / "README.md").write_text("keep")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("keep")
    for kind, path, written in (("dirs", tmp_path / "README.md", "folder"), ("files", tmp_path / "mine", "file")):
        ran = []
        with pytest.raises(DataError, match=rf"{path.name}: is a {'file' if written == 'folder' else 'folder'}, but "
                                            rf"the output written here is a {written}: is the path right\? Nothing "
                                            r"was changed"):
            with atomic_outputs(**{kind: [path]}):
                ran.append(True)
        assert not ran
    assert (tmp_path / "README.md").read_text() == (tmp_path / "mine" / "keep.txt").read_text() == "keep"
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "README.md", "mine", "mine/keep.txt"]


def test_a_full_disk_while_writing_names_every_output(tmp_path):
    """ENOSPC, EDQUOT or EFBIG raised by a write names no file: the outputs are named instead, and kept."""
    first, second = tmp_path / "headline.json", tmp_path / "scores"
    write_json(first, {"old": 1})
    with pytest.raises(DataError, match=rf"^{first}, {second}: cannot be written \(File too large\); no output was "
                                        "changed$"):
        with atomic_outputs(files=[first], dirs=[second]) as tmp:
            tmp[first].write_text("new")
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
    assert first.read_text() == '{\n  "old": 1\n}\n' and not second.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["headline.json"]


def test_several_outputs_are_all_new_or_all_as_they_were(tmp_path, monkeypatch):
    first, second = tmp_path / "benchmark.csv", tmp_path / "sub" / "summary.json"
    write_json(first, {"old": 1})
    write_json(second, {"old": 2})
    before = {path: path.read_bytes() for path in (first, second)}
    real_replace = os.replace

    def second_cannot_move_in(src, dst):  # the first output is already in place when the second fails
        if str(dst) == str(second) and str(src).endswith(".tmp"):
            raise OSError(30, "Read-only file system", str(src))
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", second_cannot_move_in)
    with pytest.raises(DataError, match="summary.json: cannot be written"):
        with atomic_outputs(files=[first, second]) as tmp:
            tmp[first].write_text("new")
            tmp[second].write_text("new")
    assert {path: path.read_bytes() for path in (first, second)} == before
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "benchmark.csv", "sub", "sub/summary.json"]


@pytest.mark.parametrize("old", [False, True])
def test_a_stage_terminated_mid_write_leaves_no_temporary_files_and_the_old_output(tmp_path, old):
    """SIGTERM (`kill`, a scheduler's preemption) inside the block writing an output: exit code 143, the folder
    holds the old output (or nothing) and no hidden temporary copy."""
    import subprocess
    import sys

    out = tmp_path / "out"
    if old:
        out.mkdir()
        (out / "kept").write_text("old")
    script = ("import os, signal, sys\n"
              "from labelbench.data.files import atomic_dir, stage_main\n"
              "@stage_main\n"
              "def main(argv):\n"
              "    with atomic_dir(sys.argv[1]) as tmp:\n"
              "        (tmp / 'part').write_text('new')\n"
              "        os.kill(os.getpid(), signal.SIGTERM)\n"
              "        (tmp / 'never').write_text('new')\n"
              "    return 0\n"
              "sys.exit(main(None))\n")
    done = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True)
    assert done.returncode == 143, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == (["out"] if old else [])
    if old:
        assert sorted(p.name for p in out.iterdir()) == ["kept"] and (out / "kept").read_text() == "old"


def test_what_a_killed_writer_left_is_removed_by_the_next_write_of_that_output(tmp_path):
    """SIGKILL (the out-of-memory killer) runs no handler: the hidden temporary copy stays, named after the host and
    the dead pid. The next write of the same output removes it, and leaves alone the copies of a process that still
    runs and of other outputs."""
    import signal
    import socket
    import subprocess
    import sys

    out = tmp_path / "out"
    script = ("import os, signal, sys\n"
              "from labelbench.data.files import atomic_dir\n"
              "with atomic_dir(sys.argv[1]) as tmp:\n"
              "    (tmp / 'part').write_text('half')\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n")
    done = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr
    (left,) = tmp_path.iterdir()
    assert left.name.startswith(f".out.{socket.gethostname()}-") and left.name.endswith(".tmp")
    assert (left / "part").read_text() == "half"
    running = tmp_path / f".out.{socket.gethostname()}-{os.getpid()}.x1.tmp"  # this process's: it runs
    other = tmp_path / f".other.{socket.gethostname()}-999999999.x2.tmp"  # another output's
    running.mkdir()
    other.mkdir()
    with atomic_dir(out) as tmp:
        (tmp / "done").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", running.name, other.name])
    assert (out / "done").read_text() == "new"
