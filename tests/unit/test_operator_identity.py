"""The operator's identity needs no passwd entry: the image runs as uid 10001 without one."""

from __future__ import annotations

import getpass
import os
import pwd

import pytest

from driftkeeper_operator.main import identity


@pytest.fixture
def no_passwd_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A uid unknown to the passwd database, and none of the variables getpass reads."""
    def unknown(uid: int) -> pwd.struct_passwd:
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(pwd, "getpwuid", unknown)
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME", "POD_ID", "POD_NAME"):
        monkeypatch.delenv(name, raising=False)


def test_kopfs_default_identity_fails_without_a_passwd_entry(no_passwd_entry: None) -> None:
    from kopf._core.engines.peering import detect_own_id

    with pytest.raises((KeyError, OSError)):  # what crashed the operator in a real pod
        getpass.getuser()
    with pytest.raises((KeyError, OSError)):
        detect_own_id(manual=False)


def test_ours_works_without_one(no_passwd_entry: None) -> None:
    assert identity().startswith(f"uid{os.getuid()}@")
    assert identity().endswith(f"/{os.getpid()}")


def test_the_pods_name_wins(no_passwd_entry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "driftkeeper-operator-7c9f-abcde")
    assert identity() == "driftkeeper-operator-7c9f-abcde"
    monkeypatch.setenv("POD_ID", "explicit")
    assert identity() == "explicit"
