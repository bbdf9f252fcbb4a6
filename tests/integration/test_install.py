"""What users get: the image's own install steps, in a fresh venv outside the source tree.

The Dockerfile builds wheels (``pip wheel ... '.[kubernetes]'``) from the files it copies,
then installs only those wheels. This runs the same two commands, read from the
Dockerfile, on a build context made from its COPY lines and .dockerignore, then uses the
result the way the image does: as a non-root user (uid 10001, as the image's USER), from a
directory outside the source tree, with the installation read-only and only a scratch
directory writable. A missing package file, a dependency only the editable install had, or
a write outside the volumes fails here.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from harness.cluster import Cluster, wait_until
from service_process import free_port, running_service, stop_process

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
UID = 10001  # the image's USER


def _run_lines() -> list[str]:
    """The Dockerfile's RUN commands, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line[4:] for line in joined.splitlines() if line.startswith("RUN ")]


def _pip_command(verb: str) -> list[str]:
    line = next(r for r in _run_lines() if re.search(rf"\bpip {verb}\b", r))
    words = shlex.split(line[line.index("pip "):])
    if "&&" in words:  # the pip command alone, not what the RUN does after it
        words = words[:words.index("&&")]
    return [w for w in words if not w.startswith("--mount")]


def _ignored(relative: str, patterns: list[str]) -> bool:
    """.dockerignore, as far as ours needs it: the last pattern matching the path or one
    of its parent directories decides; ``!`` re-includes; ``**/`` matches at any depth."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
        else:
            hit = any(fnmatch.fnmatch(prefix, pattern) and prefix.count("/") ==
                      pattern.count("/") for prefix in prefixes)
        if hit:
            ignored = not negate
    return ignored


def _context(target: Path) -> Path:
    """The files a `docker build .` sends and the build stage copies."""
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    build_stage = DOCKERFILE.split("\nFROM ")[1]
    for sources in re.findall(r"^COPY (?!--from)(.+) \S+$", build_stage, flags=re.M):
        for source in sources.split():
            for path in [ROOT / source, *(ROOT / source).rglob("*")]:
                relative = path.relative_to(ROOT).as_posix()
                if path.is_file() and not _ignored(relative, patterns):
                    (target / relative).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target / relative)
    return target


@pytest.fixture(scope="module")
def installed() -> Iterator[Path]:
    """A venv holding what the image holds: built and installed by its own commands (in a
    directory other users may enter: pytest's own temporary directory is private)."""
    work = Path(tempfile.mkdtemp(prefix="driftkeeper-install-"))
    work.chmod(0o755)
    try:
        yield _install(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _install(work: Path) -> Path:
    context = _context(work / "context")
    wheel = _pip_command("wheel")
    wheel[wheel.index("--wheel-dir") + 1] = str(work / "wheels")
    wheel = [str(context) + w[1:] if w.startswith(".[") else w for w in wheel]
    subprocess.run([sys.executable, "-m", *wheel], check=True, cwd=work,
                   capture_output=True, timeout=900)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = _pip_command("install")
    install[install.index("--find-links") + 1] = str(work / "wheels")
    subprocess.run([str(venv / "bin" / "python"), "-m", *install], check=True, cwd=work,
                   capture_output=True, timeout=900)
    return venv


def test_the_wheel_holds_every_package_file(installed: Path) -> None:
    wheel = next((installed.parent / "wheels").glob("driftkeeper-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for root, package in ((ROOT / "service", "driftkeeper"),
                          (ROOT / "operator", "driftkeeper_operator")):
        for path in (root / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                assert path.relative_to(root).as_posix() in names, path
    # The license pyproject declares ships with it, in the text of the repository's LICENSE.
    licenses = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert len(licenses) == 1, sorted(names)
    assert zipfile.ZipFile(wheel).read(licenses[0]) == (ROOT / "LICENSE").read_bytes()


def _as_image_user(scratch: Path) -> tuple[list[str], dict[str, str]]:
    """Run like the image: uid 10001 when we are root (the venv, owned by root, is then
    read-only to it), HOME and the state in a scratch directory, no source tree on the
    path."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(scratch), "OMP_NUM_THREADS": "1",
           "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    if os.getuid() != 0:
        return [], env
    os.chown(scratch, UID, UID)
    for path in scratch.rglob("*"):
        os.chown(path, UID, UID)
    return ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups"], env


def test_the_installed_package_trains_serves_and_judges_drift(installed: Path) -> None:
    scratch = installed.parent / "scratch"  # the only place the image user may write
    scratch.mkdir()
    prefix, env = _as_image_user(scratch)
    exe = installed / "bin" / "driftkeeper"

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, str(exe), *args], cwd=scratch, env=env,
                              capture_output=True, text=True, timeout=timeout)

    done = run("train", "--output", str(scratch / "models"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained v1" in done.stdout
    with running_service(scratch / "models", scratch, workers=2, exe=exe, prefix=prefix,
                         cwd=scratch, env=env) as svc:
        row = {"carat": 0.5, "cut": "Ideal", "color": "E", "clarity": "VS1", "depth": 61.5,
               "table": 55.0}
        resp = requests.post(svc.url + "/predict", json=row, timeout=10)
        assert resp.status_code == 200 and resp.json()["model_version"] == "v1"
        assert requests.get(svc.url + "/reference", timeout=10).json()["model_version"] == "v1"
    # Two CSVs of the shipped table: the same rows are no drift (exit 0).
    export = ("import driftkeeper.data as d; t = d.load_diamonds(); "
              "t.sample(2000, random_state=1).to_csv('a.csv', index=False); "
              "t.sample(2000, random_state=2).to_csv('b.csv', index=False)")
    done = subprocess.run([*prefix, str(installed / "bin" / "python"), "-c", export],
                          cwd=scratch, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    done = run("drift", "--reference", "a.csv", "--current", "b.csv")
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "data drift: ok" in done.stdout
    for command in ("retrain", "operator", "simulate"):
        assert run(command, "--help").returncode == 0
    # The image carries no report or demo dependencies; the commands say what to install.
    done = run("report", "--model-dir", "models", "--current", "a.csv", "--output", "r.html")
    assert done.returncode == 2 and "driftkeeper[report]" in done.stderr
    probe = subprocess.run([str(installed / "bin" / "python"), "-c",
                            "import importlib.util as u; print([m for m in ('matplotlib', "
                            "'seaborn', 'rich') if u.find_spec(m)])"],
                           capture_output=True, text=True, timeout=60)
    assert probe.stdout.strip() == "[]"


def test_the_installed_operator_starts_as_a_uid_with_no_passwd_entry(
        installed: Path, control_plane) -> None:
    """The image's operator, as the image runs it (uid 10001, which has no passwd entry
    here either, and no USER, LOGNAME or POD_ID), against a real API server: it logs in,
    answers its liveness probe and writes a policy's status. Kopf's default identity
    (``getpass.getuser()``) crashed exactly this at start in a real pod."""
    if os.getuid() != 0:
        pytest.skip("runs the operator as uid 10001: needs root")
    with contextlib.suppress(KeyError):
        pytest.skip(f"uid {UID} has a passwd entry here ({pwd.getpwuid(UID).pw_name}): "
                    "the condition under test cannot be made")
    scratch = installed.parent / "operator-scratch"
    scratch.mkdir()
    admin = Cluster(control_plane.kubeconfig, "apiserver", control_plane)
    namespace = admin.namespace(f"uid-{uuid.uuid4().hex[:8]}")
    kubeconfig = admin.operator_kubeconfig(namespace, scratch)
    # The CA file lives in pytest's private directory: embed it for the image's user.
    config = yaml.safe_load(kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    cluster["certificate-authority-data"] = base64.b64encode(
        Path(cluster.pop("certificate-authority")).read_bytes()).decode()
    kubeconfig.write_text(yaml.safe_dump(config))
    admin.create_policy(namespace, "diamonds", {"target": {"service": "none"}})
    prefix, env = _as_image_user(scratch)
    port = free_port()
    log = scratch / "operator.log"
    with open(log, "wb") as out:
        operator = subprocess.Popen(
            [*prefix, str(installed / "bin" / "driftkeeper"), "operator", "--namespace",
             namespace, f"--liveness=http://127.0.0.1:{port}/healthz"],
            env={**env, "KUBECONFIG": str(kubeconfig)}, cwd=scratch, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def alive() -> bool:
            assert operator.poll() is None, log.read_text()[-3000:]
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok
            except requests.ConnectionError:
                return False

        wait_until(alive, 90, "the operator's liveness probe")
        wait_until(lambda: (admin.policy(namespace, "diamonds").get("status") or {})
                   .get("phase"), 90, "the policy's status")
    finally:
        stop_process(operator)
    assert "getpwuid" not in log.read_text()
