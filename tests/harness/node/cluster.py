"""``scripts/local-cluster up|down|status``: a real single-node Kubernetes cluster here.

``up`` writes the certificates and configuration into one directory, starts the node's
init (``inside.py``) under ``unshare`` in new mount, network and PID namespaces, hands it
one end of a veth pair, and waits until the node is Ready and the add-ons (CoreDNS, the
StorageClass and its volumes) are applied. ``down`` ends the init by PID (the kernel then
ends every process of the namespace), and removes the one thing namespaces do not hold:
the pods' cgroups. It leaves the machine as it found it (``machine.py`` checks)."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import addons
from .configs import write_all
from .layout import (
    CGROUP_ROOT,
    HOST_IP,
    HOST_LINK,
    LINK_PREFIX,
    NODE_LINK,
    TOOLS,
    Layout,
    missing,
    node_env,
)

ROOT = Path(__file__).resolve().parents[3]
DEFAULT_DIR = TOOLS.parent / "local-cluster"
PR_SET_PDEATHSIG = 1


def build_images() -> dict[str, Path]:
    """scripts/build-images: name → archive (cached by the hash of its inputs)."""
    done = subprocess.run([str(ROOT / "scripts" / "build-images")], check=True,
                          stdout=subprocess.PIPE, text=True, timeout=1800)
    return {name: Path(path) for name, _, path in
            (line.partition("=") for line in done.stdout.split())}


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _die_with_caller() -> None:
    """In the child before exec: SIGKILL when the process that started it dies, so that a
    killed test run takes its node with it (the node's init follows unshare)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def up(layout: Layout, images: dict[str, Path], timeout: float = 240,
       tied_to_caller: bool = False) -> None:
    """Start the node; with ``tied_to_caller`` (tests) it ends when the caller dies.
    Without it (``scripts/local-cluster up``) it runs until ``down``."""
    reason = missing()
    if reason:
        raise SystemExit(f"local-cluster: {reason}")
    if layout.pid_file.exists() and _alive(int(layout.pid_file.read_text())):
        raise SystemExit(f"local-cluster: already up ({layout.root})")
    reclaim_stale()
    if layout.root.exists():
        shutil.rmtree(layout.root)
    write_all(layout, addons.image_ref(images["pause"]))
    layout.images_file.write_text("".join(f"{p}\n" for p in images.values()))
    started = time.monotonic()
    with open(layout.logs / "node.log", "ab") as log:
        unshare = subprocess.Popen(
            ["unshare", "--mount", "--net", "--pid", "--fork", "--mount-proc",
             "--propagation", "private", sys.executable, "-m", "harness.node.inside",
             str(layout.root)],
            cwd=ROOT / "tests", env={**node_env(), "PYTHONPATH": str(ROOT / "tests")},
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_caller if tied_to_caller else None)
    layout.pid_file.write_text(f"{unshare.pid}\n")
    try:
        deadline = time.monotonic() + 10
        while not _children(unshare.pid):
            if unshare.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the node's init did not start")
            time.sleep(0.05)
        init = _children(unshare.pid)[0]
        subprocess.run(["ip", "link", "add", HOST_LINK, "type", "veth", "peer", "name",
                        NODE_LINK, "netns", str(init)], check=True, timeout=30)
        subprocess.run(["ip", "addr", "add", f"{HOST_IP}/{LINK_PREFIX}", "dev", HOST_LINK],
                       check=True, timeout=30)
        subprocess.run(["ip", "link", "set", HOST_LINK, "up"], check=True, timeout=30)
        deadline = time.monotonic() + timeout
        while not layout.ready_file.exists():
            if unshare.poll() is not None:
                raise RuntimeError("the node stopped")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the node was not up after {timeout:.0f}s")
            time.sleep(0.25)
        addons.apply(layout, images, deadline)
    except BaseException as exc:
        log_tail = (layout.logs / "node.log").read_text(errors="replace")[-3000:]
        down(layout)
        raise SystemExit(f"local-cluster: {exc}\n{log_tail}") from exc
    print(f"local-cluster: up in {time.monotonic() - started:.1f}s; "
          f"export KUBECONFIG={layout.admin_kubeconfig}", file=sys.stderr)


def down(layout: Layout, timeout: float = 60) -> None:
    """Stop the node by PID and remove its cgroups. Idempotent."""
    if layout.pid_file.exists():
        pid = int(layout.pid_file.read_text())
        for target in [*_children(pid), pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.2)
        if _alive(pid):
            for target in [*_children(pid), pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(target, signal.SIGKILL)
            time.sleep(1)
        layout.pid_file.unlink()
    layout.ready_file.unlink(missing_ok=True)
    # The veth dies with the node's network namespace; the host's end with it.
    deadline = time.monotonic() + 10
    while Path(f"/sys/class/net/{HOST_LINK}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    remove_cgroups()


def reclaim_stale() -> None:
    """Remove what a killed earlier run left behind (its empty cgroups), so that a new node
    starts, and the machine is compared, from the state the machine had before any node.
    Refuses while another node is up: its cgroups are not stale."""
    if Path(f"/sys/class/net/{HOST_LINK}").exists():
        raise SystemExit(f"local-cluster: {HOST_LINK} exists: another local cluster is up")
    remove_cgroups(attempts=1)


def remove_cgroups(base: Path = Path("/sys/fs/cgroup"), attempts: int = 50) -> None:
    """rmdir the pods' cgroups, deepest first (an empty cgroup is removed by rmdir; one
    that still holds a process stays, and rmdir of it fails harmlessly)."""
    for controller in base.iterdir():
        root = controller / CGROUP_ROOT
        if controller.is_symlink() or not root.is_dir():
            continue
        for _ in range(attempts):  # cgroups empty a moment after their last process exits
            nested = sorted((p for p in root.rglob("*") if p.is_dir()),
                            key=lambda p: len(p.parts), reverse=True)
            directories = [*nested, root]
            for directory in directories:
                with contextlib.suppress(OSError):
                    directory.rmdir()
            if not root.exists():
                break
            time.sleep(0.2)


def status(layout: Layout) -> int:
    if not (layout.pid_file.exists() and _alive(int(layout.pid_file.read_text()))):
        print("local-cluster: down")
        return 1
    done = subprocess.run([str(TOOLS / "bin" / "kubectl"), "--kubeconfig",
                           str(layout.admin_kubeconfig), "get", "nodes,pods", "-A",
                           "-o", "wide"], timeout=30)
    return done.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/local-cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR,
                        help=f"where the cluster keeps everything (default {DEFAULT_DIR})")
    args = parser.parse_args(argv)
    layout = Layout(args.dir.resolve())
    if args.command == "up":
        up(layout, build_images())
        print(layout.admin_kubeconfig)
    elif args.command == "down":
        down(layout)
    else:
        return status(layout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
