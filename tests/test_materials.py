"""Unit tests for learnhub_container.materials: syncing materials without losing learner edits."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from learnhub_container import materials
from learnhub_container.materials import ActionKind, SyncResult, sync, updated_name


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    src = tmp_path / "materials"
    dest = tmp_path / "home"
    src.mkdir()
    dest.mkdir()
    return src, dest, dest / ".learnhub" / "materials.json"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def kinds(result: SyncResult) -> dict[str, ActionKind]:
    return {a.path: a.kind for a in result.actions}


def test_updated_name() -> None:
    assert updated_name("01-intro.ipynb") == "01-intro.updated.ipynb"
    assert updated_name("week1/data.csv") == "week1/data.updated.csv"
    assert updated_name("Makefile") == "Makefile.updated"


def test_first_sync_copies_files_and_dirs_with_0644(dirs: tuple[Path, Path, Path]) -> None:
    src, dest, state = dirs
    write(src / "01-intro.ipynb", "v1")
    f = write(src / "week1" / "data" / "x.csv", "a,b")
    f.chmod(0o600)  # the source mode must not leak into the workspace

    result = sync(src, dest, state)

    assert kinds(result) == {
        "01-intro.ipynb": ActionKind.COPIED,
        "week1/data/x.csv": ActionKind.COPIED,
    }
    assert (dest / "01-intro.ipynb").read_text() == "v1"
    assert (dest / "week1/data/x.csv").read_text() == "a,b"
    for rel in ("01-intro.ipynb", "week1/data/x.csv"):
        assert stat.S_IMODE((dest / rel).stat().st_mode) == 0o644
    saved = json.loads(state.read_text())
    assert set(saved["files"]) == {"01-intro.ipynb", "week1/data/x.csv"}
    assert result.ok


def test_second_sync_without_changes_is_quiet(dirs: tuple[Path, Path, Path]) -> None:
    src, dest, state = dirs
    write(src / "a.ipynb", "v1")
    sync(src, dest, state)

    result = sync(src, dest, state)

    assert kinds(result) == {"a.ipynb": ActionKind.UNCHANGED}


def test_learner_deleted_file_stays_deleted(dirs: tuple[Path, Path, Path]) -> None:
    src, dest, state = dirs
    write(src / "a.ipynb", "v1")
    sync(src, dest, state)
    (dest / "a.ipynb").unlink()

    assert kinds(sync(src, dest, state)) == {"a.ipynb": ActionKind.KEPT_DELETED}
    assert not (dest / "a.ipynb").exists()

    # Not even a new version of the source brings it back.
    write(src / "a.ipynb", "v2")
    assert kinds(sync(src, dest, state)) == {"a.ipynb": ActionKind.KEPT_DELETED}
    assert not (dest / "a.ipynb").exists()
    assert not (dest / "a.updated.ipynb").exists()


def test_unmodified_file_is_updated_when_source_changes(dirs: tuple[Path, Path, Path]) -> None:
    src, dest, state = dirs
    write(src / "week1" / "a.ipynb", "v1")
    sync(src, dest, state)
    write(src / "week1" / "a.ipynb", "v2")

    result = sync(src, dest, state)

    assert kinds(result) == {"week1/a.ipynb": ActionKind.UPDATED}
    assert (dest / "week1/a.ipynb").read_text() == "v2"
    assert not (dest / "week1/a.updated.ipynb").exists()
    # And the next change is recognised against the new version.
    write(src / "week1" / "a.ipynb", "v3")
    assert kinds(sync(src, dest, state)) == {"week1/a.ipynb": ActionKind.UPDATED}
    assert (dest / "week1/a.ipynb").read_text() == "v3"


def test_learner_edit_kept_when_source_unchanged(dirs: tuple[Path, Path, Path]) -> None:
    src, dest, state = dirs
    write(src / "a.ipynb", "v1")
    sync(src, dest, state)
    write(dest / "a.ipynb", "mine")

    result = sync(src, dest, state)

    assert kinds(result) == {"a.ipynb": ActionKind.KEPT_LOCAL}
    assert (dest / "a.ipynb").read_text() == "mine"
    assert not (dest / "a.updated.ipynb").exists()


def test_learner_edit_kept_and_updated_copy_written(dirs: tuple[Path, Path, Path]) -> None:
    src, dest, state = dirs
    write(src / "01-intro.ipynb", "v1")
    sync(src, dest, state)
    write(dest / "01-intro.ipynb", "mine")
    write(src / "01-intro.ipynb", "v2")

    result = sync(src, dest, state)

    assert kinds(result) == {"01-intro.ipynb": ActionKind.WROTE_UPDATED_COPY}
    assert "01-intro.updated.ipynb" in result.actions[0].describe()
    assert (dest / "01-intro.ipynb").read_text() == "mine"
    copy = dest / "01-intro.updated.ipynb"
    assert copy.read_text() == "v2"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o644

    # The copy is written once per source version, not on every start.
    copy.unlink()
    assert kinds(sync(src, dest, state)) == {"01-intro.ipynb": ActionKind.KEPT_LOCAL}
    assert not copy.exists()
    # A further source version produces a fresh copy.
    write(src / "01-intro.ipynb", "v3")
    assert kinds(sync(src, dest, state)) == {"01-intro.ipynb": ActionKind.WROTE_UPDATED_COPY}
    assert copy.read_text() == "v3"
    assert (dest / "01-intro.ipynb").read_text() == "mine"


def test_existing_unsynced_different_file_is_kept(dirs: tuple[Path, Path, Path]) -> None:
    src, dest, state = dirs
    write(src / "a.ipynb", "course")
    write(dest / "a.ipynb", "learner's own")

    result = sync(src, dest, state)

    assert kinds(result) == {"a.ipynb": ActionKind.WROTE_UPDATED_COPY}
    assert (dest / "a.ipynb").read_text() == "learner's own"
    assert (dest / "a.updated.ipynb").read_text() == "course"


def test_existing_unsynced_identical_file_is_adopted(dirs: tuple[Path, Path, Path]) -> None:
    src, dest, state = dirs
    write(src / "a.ipynb", "same")
    write(dest / "a.ipynb", "same")

    assert kinds(sync(src, dest, state)) == {"a.ipynb": ActionKind.UNCHANGED}
    # Now tracked: a source change updates it in place.
    write(src / "a.ipynb", "v2")
    assert kinds(sync(src, dest, state)) == {"a.ipynb": ActionKind.UPDATED}


def test_lost_state_never_overwrites_learner_edits(dirs: tuple[Path, Path, Path]) -> None:
    src, dest, state = dirs
    write(src / "a.ipynb", "v1")
    sync(src, dest, state)
    write(dest / "a.ipynb", "mine")
    write(src / "a.ipynb", "v2")
    state.write_text("{not json")

    result = sync(src, dest, state)

    assert result.warnings and "state file" in result.warnings[0]
    assert (dest / "a.ipynb").read_text() == "mine"
    assert (dest / "a.updated.ipynb").read_text() == "v2"
    json.loads(state.read_text())  # rewritten as valid JSON


def test_skips_dotfiles_and_checkpoints(dirs: tuple[Path, Path, Path]) -> None:
    src, dest, state = dirs
    write(src / "a.ipynb", "v1")
    write(src / ".hidden", "x")
    write(src / ".git" / "config", "x")
    write(src / ".ipynb_checkpoints" / "a-checkpoint.ipynb", "x")
    write(src / "week1" / ".ipynb_checkpoints" / "b-checkpoint.ipynb", "x")

    result = sync(src, dest, state)

    assert kinds(result) == {"a.ipynb": ActionKind.COPIED}
    assert sorted(p.name for p in dest.iterdir()) == [".learnhub", "a.ipynb"]
    assert not (dest / "week1").exists()


def test_symlinks_out_of_source_are_not_followed(
    dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    src, dest, state = dirs
    secret = write(tmp_path / "outside" / "secret.txt", "secret")
    (src / "leak.txt").symlink_to(secret)
    (src / "leakdir").symlink_to(secret.parent, target_is_directory=True)
    write(src / "real.txt", "ok")
    (src / "alias.txt").symlink_to(src / "real.txt")  # stays inside: fine to copy

    result = sync(src, dest, state)

    k = kinds(result)
    assert k["leak.txt"] is ActionKind.SKIPPED
    assert k["leakdir"] is ActionKind.SKIPPED
    assert k["real.txt"] is ActionKind.COPIED
    assert k["alias.txt"] is ActionKind.COPIED
    assert not (dest / "leak.txt").exists()
    assert not (dest / "leakdir").exists()
    assert (dest / "alias.txt").read_text() == "ok"
    assert not (dest / "alias.txt").is_symlink()


def test_does_not_write_through_learner_symlinks(
    dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    src, dest, state = dirs
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (dest / "week1").symlink_to(elsewhere, target_is_directory=True)
    write(src / "week1" / "a.ipynb", "v1")

    result = sync(src, dest, state)

    assert kinds(result) == {"week1/a.ipynb": ActionKind.SKIPPED}
    assert list(elsewhere.iterdir()) == []


def test_state_written_atomically(dirs: tuple[Path, Path, Path]) -> None:
    src, dest, state = dirs
    write(src / "a.ipynb", "v1")
    sync(src, dest, state)
    # No temp files are left next to the state file or the copied files.
    assert [p.name for p in state.parent.iterdir()] == ["materials.json"]
    assert sorted(p.name for p in dest.iterdir()) == [".learnhub", "a.ipynb"]


def test_per_file_error_does_not_stop_the_sync(dirs: tuple[Path, Path, Path]) -> None:
    src, dest, state = dirs
    write(src / "blocked" / "a.ipynb", "v1")
    write(src / "b.ipynb", "v1")
    write(dest / "blocked", "a file where the sync needs a folder")

    result = sync(src, dest, state)

    k = kinds(result)
    assert k["blocked/a.ipynb"] is ActionKind.ERROR
    assert k["b.ipynb"] is ActionKind.COPIED
    assert not result.ok


def test_missing_source_raises(tmp_path: Path) -> None:
    with pytest.raises(materials.SyncError, match="does not exist"):
        sync(tmp_path / "nope", tmp_path / "home", tmp_path / "state.json")


def test_cli_prints_one_line_per_action(
    dirs: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    src, dest, state = dirs
    write(src / "a.ipynb", "v1")
    write(src / "b.ipynb", "v1")
    argv = ["sync", "--src", str(src), "--dest", str(dest), "--state", str(state)]

    assert materials.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "materials: copied: a.ipynb",
        "materials: copied: b.ipynb",
        "materials: sync done: copied=2",
    ]

    write(dest / "a.ipynb", "mine")
    write(src / "a.ipynb", "v2")
    assert materials.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("materials: conflict: a.ipynb (your version kept")
    assert out[-1] == "materials: sync done: conflict=1 unchanged=1"


def test_cli_failure_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sync", "--src", str(tmp_path / "nope"), "--dest", str(tmp_path), "--state", "s"]
    assert materials.main(argv) == 1
    assert "sync failed" in capsys.readouterr().err


def test_unreadable_destination_reported(
    dirs: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dest, state = dirs
    write(src / "a.ipynb", "v1")
    write(src / "b.ipynb", "v1")
    write(dest / "a.ipynb", "mine")
    real_hash = materials.file_sha256

    # Simulates an unreadable learner file (permissions cannot be tested as root).
    def fake_hash(path: Path) -> str:
        if path == dest / "a.ipynb":
            raise PermissionError(13, "Permission denied", str(path))
        return real_hash(path)

    monkeypatch.setattr(materials, "file_sha256", fake_hash)

    result = sync(src, dest, state)

    assert kinds(result) == {"a.ipynb": ActionKind.ERROR, "b.ipynb": ActionKind.COPIED}
    assert (dest / "a.ipynb").read_text() == "mine"
