"""Tests for ae_anomaly.runs.folder: the run folder is either complete or absent."""

from __future__ import annotations

from pathlib import Path

import pytest

from ae_anomaly.errors import UserError
from ae_anomaly.runs.folder import INCOMPLETE_SUFFIX, RunFolder


def test_work_folder_name(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    assert folder.work == tmp_path / ("run" + INCOMPLETE_SUFFIX)


def test_fresh_run_writes_into_work_then_finishes(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    assert folder.prepare(overwrite=False, resume=False) is False
    assert folder.work.is_dir()
    assert not folder.final.exists()
    (folder.work / "metrics.json").write_text("{}", encoding="utf-8")
    assert folder.finish() == folder.final
    assert (folder.final / "metrics.json").read_text(encoding="utf-8") == "{}"
    assert not folder.work.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_nested_output_path_is_created(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "a" / "b" / "run")
    folder.prepare(overwrite=False, resume=False)
    assert folder.work.is_dir()


def test_existing_final_folder_refused_without_overwrite(tmp_path: Path) -> None:
    final = tmp_path / "run"
    final.mkdir()
    (final / "old.txt").write_text("old", encoding="utf-8")
    with pytest.raises(UserError, match="already exists") as info:
        RunFolder(final).prepare(overwrite=False, resume=False)
    assert "--overwrite" in str(info.value)
    assert (final / "old.txt").read_text(encoding="utf-8") == "old"
    assert not RunFolder(final).work.exists()


def test_overwrite_keeps_the_old_run_until_finish(tmp_path: Path) -> None:
    final = tmp_path / "run"
    final.mkdir()
    (final / "config.yaml").write_text("seed: 0\n", encoding="utf-8")
    (final / "old.txt").write_text("old", encoding="utf-8")
    folder = RunFolder(final)
    assert folder.prepare(overwrite=True, resume=False) is False
    # the old run is still complete and in place while the new one is written
    assert (final / "old.txt").read_text(encoding="utf-8") == "old"
    (folder.work / "new.txt").write_text("new", encoding="utf-8")
    folder.finish()
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no .old, no .incomplete


def test_interrupted_run_refused_without_resume_or_overwrite(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    folder.work.mkdir()
    (folder.work / "checkpoint.safetensors").write_bytes(b"ckpt")
    with pytest.raises(UserError, match="interrupted run") as info:
        folder.prepare(overwrite=False, resume=False)
    assert "--resume" in str(info.value)
    assert (folder.work / "checkpoint.safetensors").read_bytes() == b"ckpt"


def test_resume_reuses_the_interrupted_work_folder(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    folder.work.mkdir()
    (folder.work / "checkpoint.safetensors").write_bytes(b"ckpt")
    assert folder.prepare(overwrite=False, resume=True) is True
    assert (folder.work / "checkpoint.safetensors").read_bytes() == b"ckpt"


def test_overwrite_discards_the_interrupted_run(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    folder.work.mkdir()
    (folder.work / "config.yaml").write_text("seed: 0\n", encoding="utf-8")
    (folder.work / "checkpoint.safetensors").write_bytes(b"ckpt")
    assert folder.prepare(overwrite=True, resume=False) is False
    assert folder.work.is_dir()
    assert list(folder.work.iterdir()) == []


def test_resume_with_nothing_to_resume(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    with pytest.raises(UserError, match="no interrupted run"):
        folder.prepare(overwrite=False, resume=True)
    assert not folder.work.exists()


def test_resume_of_a_complete_run(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    folder.final.mkdir()
    with pytest.raises(UserError, match="already complete"):
        folder.prepare(overwrite=False, resume=True)


def test_parent_that_is_a_regular_file_is_a_user_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder", encoding="utf-8")
    folder = RunFolder(blocker / "run")
    with pytest.raises(UserError, match="cannot create output folder") as info:
        folder.prepare(overwrite=False, resume=False)
    assert str(folder.work) in str(info.value)
    assert blocker.read_text(encoding="utf-8") == "not a folder"


def test_finish_is_not_blocked_by_a_stale_old_folder(tmp_path: Path) -> None:
    # a stale <out>.old (e.g. from a crash inside finish()) does not block the swap
    final = tmp_path / "run"
    final.mkdir()
    stale = tmp_path / "run.old"
    stale.mkdir()
    (stale / "x").write_text("x", encoding="utf-8")
    folder = RunFolder(final)
    folder.prepare(overwrite=True, resume=False)
    (folder.work / "new.txt").write_text("new", encoding="utf-8")
    folder.finish()
    assert [p.name for p in final.iterdir()] == ["new.txt"]
    assert not folder.work.exists()


def test_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    final = tmp_path / "documents"
    final.mkdir()
    (final / "thesis.tex").write_text("precious", encoding="utf-8")
    with pytest.raises(UserError, match="refusing to overwrite"):
        RunFolder(final).prepare(overwrite=True, resume=False)
    assert (final / "thesis.tex").read_text(encoding="utf-8") == "precious"
    assert not RunFolder(final).work.exists()


def test_dot_names_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    folder = RunFolder(Path("."))
    assert folder.final == tmp_path
    assert folder.work == tmp_path.with_name(tmp_path.name + ".incomplete")
    with pytest.raises(UserError, match="refusing to overwrite"):
        folder.prepare(overwrite=True, resume=False)
    assert (tmp_path / "notes.txt").exists()


def test_overwrite_refuses_an_incomplete_path_that_is_not_a_run(tmp_path: Path) -> None:
    folder = RunFolder(tmp_path / "run")
    folder.work.write_text("a file of the user's", encoding="utf-8")
    with pytest.raises(UserError, match="not an interrupted run"):
        folder.check(overwrite=True, resume=False)
    assert folder.work.read_text(encoding="utf-8") == "a file of the user's"
