"""The data folder's split between root and the service's user, without a hub (as root, as the
test command runs). The running hub is checked in tests/test_least_privilege.py."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest
from traitlets.config import Config

from hub.errors import LearnHubError
from hub.hubconfig import apply_services
from hub.privilege import prepare_data_dir, run_as_service_user, service_account
from hub.settings import Settings, load_settings

SERVICE_USER = "learnhub"


def settings_for(tmp_path: Path, extra: str = "") -> Settings:
    path = tmp_path / "learnhub.yaml"
    path.write_text(f"hub:\n  data_dir: {tmp_path / 'var'}\n  hub_ip: 127.0.0.1\n{extra}")
    return load_settings(path, {})


def owner_and_mode(path: Path) -> tuple[int, int, int]:
    info = path.lstat()
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def test_an_older_data_folder_is_moved_and_handed_over(tmp_path: Path) -> None:
    account = pwd.getpwnam(SERVICE_USER)
    data = tmp_path / "var"
    (data / "exchange" / "course" / "inbound").mkdir(parents=True)
    (data / "exchange" / "course" / "inbound" / "nb.ipynb").write_text("{}")
    (data / "learnhub.sqlite").write_bytes(b"db")
    (data / "learnhub.sqlite-wal").write_bytes(b"committed but not checkpointed")
    (data / "jupyterhub.sqlite").write_bytes(b"hub")

    prepare_data_dir(settings_for(tmp_path))

    service = data / "service"
    assert (service / "learnhub.sqlite").read_bytes() == b"db"
    assert (service / "learnhub.sqlite-wal").read_bytes() == b"committed but not checkpointed"
    assert (service / "exchange" / "course" / "inbound" / "nb.ipynb").read_text() == "{}"
    assert not (data / "learnhub.sqlite").exists() and not (data / "exchange").exists()
    moved = [service, *service.rglob("*")]
    assert {p.lstat().st_uid for p in moved} == {account.pw_uid}
    assert owner_and_mode(service) == (account.pw_uid, account.pw_gid, 0o700)
    assert owner_and_mode(data) == (0, account.pw_gid, 0o710)
    assert owner_and_mode(data / "jupyterhub.sqlite")[0::2] == (0, 0o600)
    # Idempotent, and a new install gets an empty database file that is the service's.
    prepare_data_dir(settings_for(tmp_path))
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    prepare_data_dir(settings_for(fresh))
    assert owner_and_mode(fresh / "var" / "service" / "learnhub.sqlite") == (
        account.pw_uid,
        account.pw_gid,
        0o600,
    )


def test_gradebooks_are_readable_by_the_service_group_only(tmp_path: Path) -> None:
    account = pwd.getpwnam(SERVICE_USER)
    course = tmp_path / "var" / "grader" / "python-foundations"
    (course / "submitted").mkdir(parents=True)
    (course / "gradebook.db").write_bytes(b"grades")
    (course / "submitted" / "student.ipynb").write_text("{}")

    prepare_data_dir(settings_for(tmp_path))

    assert owner_and_mode(course.parent) == (0, account.pw_gid, 0o710)
    assert owner_and_mode(course) == (0, account.pw_gid, 0o710)
    assert owner_and_mode(course / "gradebook.db") == (0, account.pw_gid, 0o640)
    # Everything else of the grading folder stays root's alone.
    assert owner_and_mode(course / "submitted")[0::2] == (0, 0o700)


def test_a_service_folder_of_someone_else_is_refused(tmp_path: Path) -> None:
    service = tmp_path / "var" / "service"
    service.mkdir(parents=True)
    os.chown(service, 12345, 12345)
    with pytest.raises(LearnHubError, match="chown -R"):
        prepare_data_dir(settings_for(tmp_path))


def test_a_missing_service_user_names_the_command_that_creates_it(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "  service_user: lh-nobody-here\n")
    with pytest.raises(LearnHubError, match="useradd --system"):
        service_account(settings)
    with pytest.raises(LearnHubError, match="unprivileged"):
        service_account(settings_for(tmp_path, "  service_user: root\n"))


@pytest.mark.parametrize("name", ["Root", "a b", "../x", "1abc", "x" * 33])
def test_service_user_must_be_a_user_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(LearnHubError, match="service_user"):
        settings_for(tmp_path, f"  service_user: '{name}'\n")


def test_managed_services_switch_user_only_when_configured(tmp_path: Path) -> None:
    def users(settings: Settings) -> dict[str, str | None]:
        c = Config()
        apply_services(c, settings)
        return {s["name"]: s.get("user") for s in c.JupyterHub.services}

    # The grading worker stays the Hub's user (root): it needs Docker for the sandboxes
    # (docs/security.md, "Grading jobs").
    assert users(settings_for(tmp_path)) == {
        "idle-culler": SERVICE_USER,
        "learnhub": SERVICE_USER,
        "grading-worker": None,
    }
    assert users(settings_for(tmp_path, "  service_user: ''\n")) == {
        "idle-culler": None,
        "learnhub": None,
        "grading-worker": None,
    }


def test_root_work_on_the_services_database_runs_as_the_service_user(tmp_path: Path) -> None:
    account = service_account(settings_for(tmp_path))
    assert account is not None
    read, write = os.pipe()

    def report() -> None:
        os.write(write, f"{os.getuid()} {os.getgid()} {os.getgroups()}".encode())

    run_as_service_user(account, report)
    os.close(write)
    assert os.read(read, 100).decode() == f"{account.uid} {account.gid} []"
    assert os.geteuid() == 0  # the caller stays root

    def fail() -> None:
        raise RuntimeError("database locked")

    with pytest.raises(LearnHubError, match=f"as {SERVICE_USER} failed"):
        run_as_service_user(account, fail)
