"""Tests for ae_anomaly.fileio: atomic writes leave a whole file or the previous one."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ae_anomaly.fileio import atomic_write, write_bytes, write_json, write_text, write_yaml


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the process umask after a test that changes it."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


def leftovers(folder: Path, keep: str) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


def test_write_text_creates_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    write_text(path, "héllo\n")
    assert path.read_text(encoding="utf-8") == "héllo\n"
    assert leftovers(tmp_path, "a.txt") == []


def test_write_bytes_replaces_previous_content(tmp_path: Path) -> None:
    path = tmp_path / "b.bin"
    write_bytes(path, b"old")
    write_bytes(path, b"\x00new\xff")
    assert path.read_bytes() == b"\x00new\xff"
    assert leftovers(tmp_path, "b.bin") == []


def test_missing_parent_folders_are_created(tmp_path: Path) -> None:
    path = tmp_path / "x" / "y" / "c.txt"
    write_text(path, "deep")
    assert path.read_text(encoding="utf-8") == "deep"


def test_write_json_and_yaml_round_trip(tmp_path: Path) -> None:
    obj = {"b": [1, 2.5, None], "a": {"ü": True}}
    write_json(tmp_path / "o.json", obj)
    write_yaml(tmp_path / "o.yaml", obj)
    text = (tmp_path / "o.json").read_text(encoding="utf-8")
    assert json.loads(text) == obj
    assert text.endswith("\n")
    assert text.index('"b"') < text.index('"a"')  # key order kept
    assert yaml.safe_load((tmp_path / "o.yaml").read_text(encoding="utf-8")) == obj


def test_the_writer_sees_a_temporary_file_in_the_same_folder(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    seen: list[Path] = []

    def writer(tmp: Path) -> None:
        seen.append(tmp)
        assert not path.exists()  # the final name appears only at the end
        tmp.write_text("done", encoding="utf-8")

    atomic_write(path, writer)
    assert seen[0].parent == tmp_path
    assert seen[0] != path
    assert not seen[0].exists()
    assert path.read_text(encoding="utf-8") == "done"


def test_failed_write_leaves_no_temp_and_keeps_previous_content(tmp_path: Path) -> None:
    path = tmp_path / "e.txt"
    write_text(path, "previous")

    def writer(tmp: Path) -> None:
        tmp.write_text("half", encoding="utf-8")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        atomic_write(path, writer)
    assert path.read_text(encoding="utf-8") == "previous"
    assert leftovers(tmp_path, "e.txt") == []


def test_failed_first_write_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"

    def writer(tmp: Path) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, writer)
    assert list(tmp_path.iterdir()) == []


def test_writer_that_deletes_its_temp_file_still_raises_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "g.txt"
    with pytest.raises(FileNotFoundError):
        atomic_write(path, lambda tmp: tmp.unlink())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_permissions_follow_the_umask(tmp_path: Path, mask: int, mode: int) -> None:
    os.umask(mask)
    path = tmp_path / "p.txt"
    write_text(path, "x")
    assert stat.S_IMODE(path.stat().st_mode) == mode
    # the same as a file written with open()
    plain = tmp_path / "plain.txt"
    plain.write_text("x", encoding="utf-8")
    assert stat.S_IMODE(plain.stat().st_mode) == mode


@pytest.mark.usefixtures("umask")
def test_permissions_are_not_mkstemps_0600(tmp_path: Path) -> None:
    os.umask(0o022)
    path = tmp_path / "q.json"
    write_json(path, {"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) != 0o600
    assert path.stat().st_mode & stat.S_IROTH
