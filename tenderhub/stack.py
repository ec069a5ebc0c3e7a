"""The local stack provisioner: installs, starts, checks and stops MariaDB, Kafka, FerretDB (on a private PostgreSQL,
or on SQLite files) and Redis.

Every service binds to 127.0.0.1 on a non-default port and keeps its data, log and PID file under one folder
(`TENDERHUB_STACK_DIR`, default `.stack/`). Downloads (Kafka jars, the FerretDB build) are cached machine-wide in
`TENDERHUB_CACHE_DIR`, so a second `up` on the same machine needs no network. `down` stops exactly the processes
`up` started: a PID file records the PID and the process start time, so a recycled PID is never signalled.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

from schema.settings import ENV_PREFIX, StackSettings

log = logging.getLogger(__name__)

ADMIN_USER, APP_USER, RELAY_USER = "tenderhub_admin", "tenderhub_app", "tenderhub_relay"
READER_USER = "tenderhub_reader"
SECRET_NAMES = (
    "mysql_admin_password",
    "mysql_app_password",
    "mysql_relay_password",
    "mysql_reader_password",
    "redis_password",
    "postgresql_ferretdb_password",
    "kafka_broker_password",
    "kafka_client_password",
    "kafka_relay_password",
    "kafka_worker_password",
    "kafka_reader_password",
)
# With TLS on (TENDERHUB_STACK_TLS_DIR): Kafka's SCRAM users, the broker's own and the one every client uses.
KAFKA_BROKER_USER, KAFKA_CLIENT_USER = "broker", "tenderhub"
# `tenderhub` (what the env file gives every client) may do anything; `relay` and `worker` get only the ACLs the
# pipeline needs (tenderhub.kafka_acls), `reader` none (the read service reads no Kafka).
KAFKA_PIPELINE_USERS = {
    "relay": "kafka_relay_password",
    "worker": "kafka_worker_password",
    "reader": "kafka_reader_password",
}
KAFKA_SASL_MECHANISM = "SCRAM-SHA-512"
DATABASE = "tenderhub"
# FerretDB's PostgreSQL role and database: the role owns that one database and nothing else.
FERRETDB_ROLE = FERRETDB_DATABASE = "ferretdb"
# Rows ANALYZE samples per column: 300 x this (see PostgreSQL.command).
PG_STATISTICS_TARGET = 10


class StackError(Exception):
    """A service could not be installed or started; says which, why and where its log is."""

    def __init__(self, service: str, reason: str, log_path: Path | None = None) -> None:
        where = f" (log: {log_path})" if log_path else ""
        super().__init__(f"{service}: {reason}{where}")
        self.service, self.reason, self.log_path = service, reason, log_path


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    port: int
    pid: int | None
    health: str  # "healthy", "stopped" or "unhealthy: <reason>"
    rss_mb: float | None


def _run(cmd: list[str], service: str, timeout: float = 900, **kw: object) -> str:
    log.debug("%s: running %s", service, " ".join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)  # type: ignore[call-overload]
    except FileNotFoundError as exc:
        raise StackError(service, f"{cmd[0]} is not installed ({exc})") from None
    except subprocess.TimeoutExpired:
        raise StackError(service, f"{' '.join(cmd[:3])} did not finish in {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip()[-1500:]
        raise StackError(service, f"{' '.join(cmd[:4])} failed (exit {proc.returncode}): {tail}")
    return str(proc.stdout)


def apt_install(service: str, packages: list[str]) -> None:
    """Install Debian packages (as root). Runs `apt-get update` only when the first try cannot find them."""
    if os.geteuid() != 0:
        raise StackError(service, f"needs Debian packages {packages}: run as root or `apt-get install` them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    log.info("%s: installing Debian packages %s", service, " ".join(packages))
    try:
        _run(cmd, service, env=env)
    except StackError:
        _run(["apt-get", "update", "-q"], service, env=env)
        _run(cmd, service, env=env)


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _proc_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may contain spaces): state is field 3, starttime field 22.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        # An exited child of this very process: reap it; it is not running.
        _reap(pid)
        return None
    return fields[19]


def child_pids(pid: int) -> list[int]:
    """The live child processes of `pid` (every thread's children), from /proc; [] when it is gone."""
    try:
        return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]
    except OSError:
        return []


def rss_mb(pid: int, with_children: bool = False) -> float | None:
    """Resident memory of a process in MB, from /proc; None when it is gone. `with_children`: plus its descendants'
    (the relay's decoder process is part of the relay)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                own = int(line.split()[1]) / 1024
                break
        else:
            return None
    except OSError:
        return None
    if with_children:
        own += sum(rss_mb(child, with_children=True) or 0.0 for child in child_pids(pid))
    return own


class Service:
    """One local service. Subclasses say how to install, initialise, start and health-check it."""

    name = ""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.cfg = stack.cfg
        self.dir = stack.root / self.name
        self.log_path = stack.root / f"{self.name}.log"
        self.pid_path = stack.root / f"{self.name}.pid"

    port: int = 0
    # Stopped with this signal (then SIGKILL after the timeout).
    stop_signal = signal.SIGTERM
    # `up` waits for this service to be healthy (and runs its after_start) before starting the services after it.
    gate = False

    def ensure_installed(self) -> None:
        raise NotImplementedError

    def initialise(self) -> None:
        """Create the data folder and config on first start."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def check_health(self) -> None:
        """Raise (any exception) while the service is not ready."""
        raise NotImplementedError

    def after_start(self) -> None:
        """Runs once the service is healthy, on every `up` (must be idempotent)."""

    @property
    def workdir(self) -> Path:
        """The folder the service's process runs in."""
        return self.dir

    def purge(self) -> None:
        """Removes what the service keeps outside the stack's folder (`down --purge`; the folder goes too)."""

    def popen_options(self) -> dict[str, Any]:
        """Extra subprocess.Popen arguments of the service's process (another OS user, secrets in its environment)."""
        return {}

    # -- lifecycle -------------------------------------------------------------------------------------------

    def running_pid(self) -> int | None:
        """The PID from our PID file if that very process is still alive (PID and start time both match)."""
        try:
            pid_text, started = self.pid_path.read_text().split()
        except (OSError, ValueError):
            return None
        pid = int(pid_text)
        return pid if _proc_start_time(pid) == started else None

    def health(self) -> str:
        try:
            self.check_health()
        except Exception as exc:  # noqa: BLE001 - any failure of a probe means "not healthy", with its reason
            return f"unhealthy: {type(exc).__name__}: {str(exc)[:200]}"
        return "healthy"

    def start(self) -> bool:
        """Start if not running; return False when it was already running."""
        if self.running_pid() is not None:
            return False
        self.pid_path.unlink(missing_ok=True)
        if _port_open(self.cfg.stack_host, self.port):
            raise StackError(
                self.name,
                f"port {self.cfg.stack_host}:{self.port} is already in use by a process this stack did not start; "
                f"stop it or set {ENV_PREFIX}{self.port_setting.upper()}",
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        self.initialise()
        with self.log_path.open("ab") as out:
            out.write(f"\n--- tenderhub stack: starting {self.name} at {time.ctime()} ---\n".encode())
            out.flush()
            proc = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
                **self.popen_options(),
            )
        started = _proc_start_time(proc.pid)
        self.pid_path.write_text(f"{proc.pid} {started}\n")
        self._proc = proc
        log.info("%s: started pid %d on port %d", self.name, proc.pid, self.port)
        return True

    @property
    def port_setting(self) -> str:
        return f"{self.name}_port" if self.name != "ferretdb" else "mongo_port"

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.running_pid() is None:
                raise StackError(self.name, f"the process exited during start-up: {self._log_tail()}", self.log_path)
            last = self.health()
            if last == "healthy":
                return
            time.sleep(0.3)
        raise StackError(self.name, f"not healthy after {timeout:.0f} s ({last})", self.log_path)

    def _log_tail(self, lines: int = 8) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def signal_stop(self) -> int | None:
        """Send the stop signal, not waiting; the PID signalled (None when not running)."""
        pid = self.running_pid()
        if pid is None:
            self.pid_path.unlink(missing_ok=True)
            return None
        log.info("%s: stopping pid %d", self.name, pid)
        os.kill(pid, self.stop_signal)
        return pid

    def stop(self, timeout: float = 30.0) -> bool:
        pid = self.signal_stop()
        if pid is None:
            return False
        return self.wait_stopped(pid, timeout)

    def wait_stopped(self, pid: int, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running_pid() is not None:
            _reap(pid)
            time.sleep(0.1)
        if self.running_pid() is not None:
            log.warning("%s: pid %d ignored SIGTERM for %.0f s; sending SIGKILL", self.name, pid, timeout)
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            _reap(pid)
        self.pid_path.unlink(missing_ok=True)
        return True

    def status(self) -> ServiceStatus:
        pid = self.running_pid()
        health = self.health() if pid is not None else "stopped"
        return ServiceStatus(self.name, self.port, pid, health, rss_mb(pid) if pid else None)


def _reap(pid: int) -> None:
    # A child started by this very process must be reaped or it stays a zombie that looks alive.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return


class MariaDB(Service):
    name = "mysql"

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack)
        self.port = self.cfg.mysql_port
        self.socket = self.dir / "mysqld.sock"
        self.datadir = self.dir / "data"

    def ensure_installed(self) -> None:
        if not (shutil.which("mariadbd") or Path("/usr/sbin/mariadbd").exists()) or not shutil.which("mariadb"):
            apt_install(self.name, ["mariadb-server", "mariadb-client"])

    def _user_args(self) -> list[str]:
        # mariadbd refuses to run as root unless told so explicitly.
        return ["--user=root"] if os.geteuid() == 0 else []

    def initialise(self) -> None:
        if (self.datadir / "mysql").is_dir():
            return
        log.info("mysql: initialising a private data directory in %s", self.datadir)
        _run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--skip-test-db",
                "--auth-root-authentication-method=socket",
                *self._user_args(),
            ],
            self.name,
        )

    def command(self) -> list[str]:
        return [
            shutil.which("mariadbd") or "/usr/sbin/mariadbd",
            "--no-defaults",
            *self._user_args(),
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--pid-file={self.dir / 'mariadbd.pid'}",
            f"--bind-address={self.cfg.stack_host}",
            f"--port={self.port}",
            "--skip-name-resolve",
            # Row-based binlog with full images and column metadata: what the CDC relay decodes.
            "--log-bin=mariadb-bin",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            "--binlog-row-metadata=FULL",
            "--server-id=1",
            "--gtid-strict-mode=ON",
            "--log-slave-updates=ON",
            "--sync-binlog=1",
            "--binlog-expire-logs-seconds=604800",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            "--innodb-buffer-pool-size=256M",
            "--max-allowed-packet=64M",
            "--max-connections=300",
            *self._tls_args(),
        ]

    def _tls_args(self) -> list[str]:
        tls = self.stack.tls_dir
        if tls is None:
            return []
        # TCP clients must use TLS; the stack's own admin statements go through the socket, which counts as secure.
        return [
            f"--ssl-ca={tls / 'ca.pem'}",
            f"--ssl-cert={tls / 'server.pem'}",
            f"--ssl-key={tls / 'server.key'}",
            "--require-secure-transport=ON",
        ]

    def _client(self, sql: str) -> str:
        return _run(
            ["mariadb", "--no-defaults", f"--socket={self.socket}", "-u", _os_user(), "-N", "-e", sql],
            self.name,
            timeout=30,
        )

    def check_health(self) -> None:
        _run(
            ["mariadb-admin", "--no-defaults", f"--socket={self.socket}", "-u", _os_user(), "ping"],
            self.name,
            timeout=5,
        )

    def after_start(self) -> None:
        # The admin account used by `migrate` (DDL + GRANT). Local socket auth is root's only way in.
        pw = self.stack.secrets["mysql_admin_password"].replace("'", "''")
        for host in ("127.0.0.1", "localhost"):
            self._client(
                f"CREATE USER IF NOT EXISTS '{ADMIN_USER}'@'{host}' IDENTIFIED BY '{pw}';"
                f"ALTER USER '{ADMIN_USER}'@'{host}' IDENTIFIED BY '{pw}';"
                f"GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'{host}' WITH GRANT OPTION;"
            )


def _os_user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


class Kafka(Service):
    name = "kafka"

    KAFKA_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.tenderhub</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{v}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>2.0.17</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId>
      <version>2.24.3</version></dependency>
  </dependencies>
</project>
"""

    def __init__(self, stack: Stack, node: int = 1) -> None:
        # Node 1 keeps the single broker's name, folder and ports; the others of a cluster are kafka-2, kafka-3.
        self.node = node
        self.name = "kafka" if node == 1 else f"kafka-{node}"
        super().__init__(stack)
        self.port = kafka_port(self.cfg, node)
        self.controller_port = kafka_controller_port(self.cfg, node)
        self.jars = self.cfg.cache_dir / f"kafka-{self.cfg.kafka_version}"
        self.props = self.dir / "server.properties"
        self.logdir = self.dir / "data"

    def ensure_installed(self) -> None:
        if not shutil.which("java"):
            apt_install(self.name, ["openjdk-17-jre-headless"])
        if (self.jars / ".complete").exists():
            return
        if not shutil.which("mvn"):
            apt_install(self.name, ["maven"])
        log.info(
            "kafka: fetching Apache Kafka %s jars from Maven Central into %s",
            self.cfg.kafka_version,
            self.jars,
        )
        self.jars.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.jars.parent) as tmp:
            pom = Path(tmp) / "pom.xml"
            pom.write_text(self.KAFKA_POM.format(v=self.cfg.kafka_version))
            out = Path(tmp) / "jars"
            _run(
                [
                    "mvn",
                    "-q",
                    "-B",
                    "-f",
                    str(pom),
                    "dependency:copy-dependencies",
                    f"-DoutputDirectory={out}",
                    "-DincludeScope=runtime",
                ],
                self.name,
            )
            (out / ".complete").write_text(self.cfg.kafka_version)
            shutil.rmtree(self.jars, ignore_errors=True)
            out.rename(self.jars)

    def _java(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        return [
            "java",
            f"-Xmx{heap}",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            "-cp",
            f"{self.jars}/*",
            main,
            *args,
        ]

    @property
    def port_setting(self) -> str:
        return "kafka_port"

    def _listener_lines(self) -> list[str]:
        host, cport = self.cfg.stack_host, self.controller_port
        tls = self.stack.tls_dir
        if tls is None:
            return [
                f"listeners=PLAINTEXT://{host}:{self.port},CONTROLLER://{host}:{cport}",
                f"advertised.listeners=PLAINTEXT://{host}:{self.port}",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
            ]
        # Clients and the brokers: SASL (SCRAM) over TLS, with ACLs. The KRaft controllers' listener (loopback) is
        # authenticated too, with PLAIN and the broker's own user: SCRAM users live in the metadata the controllers
        # serve, so they cannot log the controllers in. The PEM keystore holds the server's key and certificate (0600).
        keystore = self.dir / "keystore.pem"
        write_private(keystore, (tls / "server.key").read_text() + (tls / "server.pem").read_text())
        password = self.stack.secrets["kafka_broker_password"]
        broker = f'username="{KAFKA_BROKER_USER}" password="{password}"'
        return [
            f"listeners=SASL_SSL://{host}:{self.port},CONTROLLER://{host}:{cport}",
            f"advertised.listeners=SASL_SSL://{host}:{self.port}",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
            "inter.broker.listener.name=SASL_SSL",
            f"sasl.enabled.mechanisms={KAFKA_SASL_MECHANISM}",
            f"sasl.mechanism.inter.broker.protocol={KAFKA_SASL_MECHANISM}",
            f"listener.name.sasl_ssl.{KAFKA_SASL_MECHANISM.lower()}.sasl.jaas.config="
            f"org.apache.kafka.common.security.scram.ScramLoginModule required {broker};",
            "sasl.mechanism.controller.protocol=PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
            "listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule "
            f'required {broker} user_{KAFKA_BROKER_USER}="{password}";',
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            f"super.users=User:{KAFKA_BROKER_USER};User:{KAFKA_CLIENT_USER}",
            "allow.everyone.if.no.acl.found=false",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={tls / 'ca.pem'}",
            "ssl.endpoint.identification.algorithm=https",
        ]

    def _scram_arguments(self) -> list[str]:
        """`--add-scram` arguments for the storage format: each user's salted password, never the password."""
        out = []
        for user, secret in (
            (KAFKA_BROKER_USER, "kafka_broker_password"),
            (KAFKA_CLIENT_USER, "kafka_client_password"),
            *KAFKA_PIPELINE_USERS.items(),
        ):
            salt, iterations = secrets.token_bytes(16), 8192
            salted = hashlib.pbkdf2_hmac("sha512", self.stack.secrets[secret].encode(), salt, iterations)
            out += [
                "--add-scram",
                f'{KAFKA_SASL_MECHANISM}=[name={user},iterations={iterations},salt="{base64.b64encode(salt).decode()}",'
                f'saltedpassword="{base64.b64encode(salted).decode()}"]',
            ]
        return out

    def _replication_lines(self) -> list[str]:
        n = self.cfg.kafka_brokers
        if n == 1:
            # One broker: internal topics (offsets, transaction state) cannot be replicated.
            return [
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
            ]
        # Every internal and data topic on all three brokers; a write is acknowledged once two have it, so one broker
        # can be lost without losing an acknowledged event or stopping the writers.
        return [
            f"offsets.topic.replication.factor={n}",
            f"transaction.state.log.replication.factor={n}",
            "transaction.state.log.min.isr=2",
            f"share.coordinator.state.topic.replication.factor={n}",
            "share.coordinator.state.topic.min.isr=2",
            f"default.replication.factor={n}",
            "min.insync.replicas=2",
            "unclean.leader.election.enable=false",
        ]

    def _cluster_id(self) -> str:
        """One id for every node of the stack's cluster: node 1 makes it, the others (started after it) read it."""
        path = self.stack.root / "kafka" / "cluster-id"
        if self.node == 1 and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(new_cluster_id() + "\n")
        return path.read_text().strip()

    def initialise(self) -> None:
        host = self.cfg.stack_host
        voters = ",".join(
            f"{n}@{host}:{kafka_controller_port(self.cfg, n)}" for n in range(1, self.cfg.kafka_brokers + 1)
        )
        formatted_tls = (self.logdir / "tenderhub-tls").exists()
        if (self.logdir / "meta.properties").exists() and formatted_tls != (self.stack.tls_dir is not None):
            raise StackError(
                self.name,
                f"its storage was formatted with TLS {'on' if formatted_tls else 'off'} and TLS is now "
                f"{'off' if formatted_tls else 'on'} ({ENV_PREFIX}STACK_TLS_DIR): run `tenderhub stack down --purge` "
                "first (its users are made when the storage is formatted)",
            )
        write_private(  # with TLS on it holds the broker's password
            self.props,
            "\n".join(
                [
                    "process.roles=broker,controller",
                    f"node.id={self.node}",
                    f"controller.quorum.voters={voters}",
                    *self._listener_lines(),
                    "controller.listener.names=CONTROLLER",
                    f"log.dirs={self.logdir}",
                    "num.partitions=3",
                    *self._replication_lines(),
                    "group.initial.rebalance.delay.ms=0",
                    # Topics are declared by `tenderhub migrate`, never created by accident.
                    "auto.create.topics.enable=false",
                    "log.retention.hours=168",
                    "",
                ]
            ),
        )
        (self.dir / "log4j2.properties").write_text(
            "\n".join(
                [
                    "rootLogger.level = INFO",
                    "rootLogger.appenderRef.out.ref = out",
                    "appender.out.type = Console",
                    "appender.out.name = out",
                    "appender.out.layout.type = PatternLayout",
                    "appender.out.layout.pattern = [%d] %p %m (%c)%n",
                    "logger.kafka.name = kafka",
                    "logger.kafka.level = WARN",
                    "logger.state.name = state.change.logger",
                    "logger.state.level = WARN",
                    "logger.org.name = org.apache.kafka",
                    "logger.org.level = WARN",
                    "",
                ]
            )
        )
        if (self.logdir / "meta.properties").exists():
            return
        # KRaft needs a formatted log directory with a cluster id before the first start.
        cluster_id = self._cluster_id()
        log.info("%s: formatting KRaft storage (cluster %s)", self.name, cluster_id)
        args = ["format", "-t", cluster_id, "-c", str(self.props)]
        if self.stack.tls_dir is None:
            _run(self._java("kafka.tools.StorageTool", *args), self.name, timeout=120)
            return
        # The SCRAM users go in through an argument file (0600, removed after), not on a command line `ps` shows.
        argfile = self.dir / "format.args"
        try:
            # The storage tool's own @file syntax: one argument per line, taken as it is.
            write_private(argfile, "".join(f"{a}\n" for a in self._scram_arguments()))
            _run(self._java("kafka.tools.StorageTool", *args, f"@{argfile}"), self.name, timeout=120)
        finally:
            argfile.unlink(missing_ok=True)
        (self.logdir / "tenderhub-tls").write_text("formatted with SCRAM users for TLS\n")

    def command(self) -> list[str]:
        heap = self.cfg.kafka_heap
        return [
            "java",
            f"-Xms{heap}",
            f"-Xmx{heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.properties'}",
            "-cp",
            f"{self.jars}/*",
            "kafka.Kafka",
            str(self.props),
        ]

    def check_health(self) -> None:
        if not _port_open(self.cfg.stack_host, self.port):
            raise ConnectionRefusedError(f"nothing listens on {self.cfg.stack_host}:{self.port} yet")
        options = {**self.stack.kafka_client_options(), "bootstrap_servers": f"{self.cfg.stack_host}:{self.port}"}
        asyncio.run(_kafka_ready(options, self.node))


async def _kafka_ready(options: dict[str, Any], node: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**options, request_timeout_ms=3000)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        if node not in {int(b["node_id"]) for b in cluster.get("brokers", [])}:
            raise RuntimeError(f"broker {node} is not registered yet")
    finally:
        await admin.close()


def stop_together(services: Sequence[Service], timeout: float = 30.0) -> dict[str, bool]:
    """Signal every one of `services`, then wait for each (SIGKILL after the timeout); name -> was it running."""
    signalled = {svc.name: (svc, svc.signal_stop()) for svc in services}
    return {name: pid is not None and svc.wait_stopped(pid, timeout) for name, (svc, pid) in signalled.items()}


def kafka_port(cfg: StackSettings, node: int) -> int:
    return cfg.kafka_port + 100 * (node - 1)


def kafka_controller_port(cfg: StackSettings, node: int) -> int:
    return cfg.kafka_controller_port + 100 * (node - 1)


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by its owner only (also when the file existed with a wider mode): for files
    that hold a secret, which never goes on a command line."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64. Like Kafka's own Uuid.randomUuid, never one that starts
    with '-' (1 in 64 would), which the storage tool's command line would read as an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def scram_sha256_verifier(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """The form PostgreSQL stores a SCRAM-SHA-256 password in (what libpq's PQencryptPasswordConn makes): setting
    the role's password to it means neither the server nor its logs ever see the password itself."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def postgresql_bin_dir() -> Path | None:
    """Debian keeps each major version's server programs in /usr/lib/postgresql/<major>/bin: the newest one."""
    found = [p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/postgres") if p.parent.parent.name.isdigit()]
    if found:
        return max(found, key=lambda p: int(p.parent.name))
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


def stop_package_clusters(service: str) -> None:
    """Debian's postgresql package creates a system cluster on port 5432 and starts it where services may start.
    The stack never uses it: stop it and leave it to manual start, so no second server keeps running."""
    if not shutil.which("pg_lsclusters"):
        return
    for line in _run(["pg_lsclusters", "--no-header"], service, timeout=30).splitlines():
        version, cluster, _port, state = line.split()[:4]
        if state.startswith("online"):
            log.info("%s: stopping the package's cluster %s/%s", service, version, cluster)
            _run(["pg_ctlcluster", version, cluster, "stop"], service, timeout=60)
        start_conf = Path("/etc/postgresql") / version / cluster / "start.conf"
        if start_conf.exists():
            start_conf.write_text("manual\n")


# Beside a cluster kept in the `postgres` user's home: the stack folder it belongs to.
STACK_MARKER = "stack-folder"


def _postmaster_running(datadir: Path) -> bool:
    try:
        pid = int((datadir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return Path(f"/proc/{pid}").exists()


# FerretDB 1.24 on PostgreSQL keeps each document as jsonb and makes a MongoDB index a btree over
# `_jsonb -> 'field'`, but it pushes an equality filter down as containment (`_jsonb -> 'field' @> value`), which a
# btree cannot answer: every find, update and delete by a field scans the whole table, so re-writing a score costs
# in proportion to the collection. A GIN index over the same expressions answers `@>`. These event triggers give
# each FerretDB index (its ascending keys, plain fields, not dotted paths) such a twin when FerretDB creates it and
# drop it with it, and `tenderhub_index_twin` also runs over the indexes made before: so the stack behaves like
# MongoDB, where the index itself serves the lookup. The twins are PostgreSQL's own; FerretDB neither lists nor
# needs them. They keep no pending list (fastupdate off): a GIN search reads its whole pending list, so with one
# every lookup cost more with each write since the last vacuum (3,000 guarded updates of one team's scores, 8 in
# flight, 2026-12-06: 5.5-7.6 s with it, 2.9-3.1 s without, the SELECT at 2.5 ms a lookup with it); twins an older
# stack made lose theirs at the next start.
FERRETDB_INDEX_TWINS_SQL = r"""
SET client_min_messages = warning;
CREATE OR REPLACE FUNCTION public.tenderhub_index_twin(btree oid) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
DECLARE
  nsp name; tbl name; method name; ncols int; options int2vector; field text; cols text[] := '{}';
BEGIN
  SELECT n.nspname, t.relname, a.amname, i.indnkeyatts, i.indoption INTO nsp, tbl, method, ncols, options
    FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_am a ON a.oid = x.relam
    JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
   WHERE i.indexrelid = btree;
  IF NOT FOUND OR method <> 'btree' OR tbl LIKE '\_ferretdb\_%' THEN
    RETURN;
  END IF;
  FOR k IN 1..ncols LOOP
    field := substring(pg_get_indexdef(btree, k, true) FROM '^\(_jsonb -> ''([^'']+)''::text\)$');
    IF field IS NULL THEN
      RETURN;
    END IF;
    -- A descending key is there for a sort, which GIN cannot serve.
    IF options[k - 1] & 1 = 0 THEN
      cols := cols || format('(_jsonb -> %L)', field);
    END IF;
  END LOOP;
  IF cardinality(cols) = 0 THEN
    RETURN;
  END IF;
  EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %I.%I USING gin (%s) WITH (fastupdate = off)',
                 'tenderhub_gin_' || btree, nsp, tbl, array_to_string(cols, ', '));
END $fn$;

CREATE OR REPLACE FUNCTION public.tenderhub_index_created() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
DECLARE r record;
BEGIN
  FOR r IN SELECT objid FROM pg_event_trigger_ddl_commands() WHERE object_type = 'index' LOOP
    PERFORM public.tenderhub_index_twin(r.objid);
  END LOOP;
END $fn$;

CREATE OR REPLACE FUNCTION public.tenderhub_index_dropped() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $fn$
DECLARE r record;
BEGIN
  -- Only an index dropped by name: a dropped collection (table) takes its twins with it.
  FOR r IN SELECT objid, schema_name FROM pg_event_trigger_dropped_objects()
            WHERE object_type = 'index' AND original AND object_name NOT LIKE 'tenderhub\_gin\_%'
  LOOP
    EXECUTE format('DROP INDEX IF EXISTS %I.%I', r.schema_name, 'tenderhub_gin_' || r.objid);
  END LOOP;
END $fn$;

DROP EVENT TRIGGER IF EXISTS tenderhub_index_created;
CREATE EVENT TRIGGER tenderhub_index_created ON ddl_command_end WHEN TAG IN ('CREATE INDEX')
  EXECUTE FUNCTION public.tenderhub_index_created();
DROP EVENT TRIGGER IF EXISTS tenderhub_index_dropped;
CREATE EVENT TRIGGER tenderhub_index_dropped ON sql_drop WHEN TAG IN ('DROP INDEX')
  EXECUTE FUNCTION public.tenderhub_index_dropped();

SELECT count(public.tenderhub_index_twin(i.indexrelid)) FROM pg_index i
  JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'public');

DO $do$
DECLARE r record;
BEGIN
  FOR r IN SELECT c.oid, n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = 'i' AND c.relname LIKE 'tenderhub\_gin\_%'
              AND NOT coalesce(c.reloptions @> '{fastupdate=off}', false)
  LOOP
    EXECUTE format('ALTER INDEX %I.%I SET (fastupdate = off)', r.nspname, r.relname);
    PERFORM gin_clean_pending_list(r.oid::regclass);
  END LOOP;
END $do$;
"""


class PostgreSQL(Service):
    """A private PostgreSQL cluster that only FerretDB uses (when its backend is postgresql).

    Its OS user (the `postgres` user of the Debian package when the stack runs as root, since PostgreSQL refuses to
    run as root; the caller otherwise) administers it through the socket in `run/` (mode 0700): peer
    authentication, no password. FerretDB's role logs in over TCP on the stack's address with a SCRAM password and
    owns only its own database; every other connection is refused (pg_hba.conf)."""

    name = "postgresql"
    gate = True  # FerretDB connects to it: its role and database must exist first
    stop_signal = signal.SIGINT  # "fast" shutdown; SIGTERM ("smart") would wait for every client to disconnect

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack)
        self.port = self.cfg.postgresql_port

    @property
    def os_user(self) -> str:
        return "postgres" if os.geteuid() == 0 else _os_user()

    @property
    def home(self) -> Path:
        """The folder of the cluster's data and socket: the service's folder in the stack, or, when the stack runs as
        root, one folder per stack in the `postgres` user's home. The server then runs as that user, which cannot be
        assumed to reach the stack's folder (a clone in a `mktemp -d` folder sits under mode 0700)."""
        if os.geteuid() != 0:
            return self.dir
        import pwd

        digest = hashlib.sha256(str(self.stack.root).encode()).hexdigest()[:16]
        return Path(pwd.getpwnam(self.os_user).pw_dir) / "tenderhub" / digest

    @property
    def datadir(self) -> Path:
        return self.home / "data"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def workdir(self) -> Path:
        return self.home

    def purge(self) -> None:
        if self.home != self.dir and self.home.exists():
            shutil.rmtree(self.home)

    def _remove_orphans(self) -> None:
        """Clusters of other stacks whose folder is gone (a deleted clone) and whose server is not running: nothing
        could ever start or purge them again."""
        for other in self.home.parent.iterdir():
            marker = other / STACK_MARKER
            if other == self.home or not marker.is_file():
                continue
            if Path(marker.read_text().strip()).exists() or _postmaster_running(other / "data"):
                continue
            log.info("postgresql: removing %s, the cluster of a stack folder that no longer exists", other)
            shutil.rmtree(other)

    def _as_os_user(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        import pwd

        entry = pwd.getpwnam(self.os_user)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _bin(self, program: str) -> str:
        found = postgresql_bin_dir()
        if found is None:
            raise StackError(self.name, "PostgreSQL is not installed (Debian package postgresql)")
        return str(found / program)

    def ensure_installed(self) -> None:
        if postgresql_bin_dir() is not None:
            return
        apt_install(self.name, ["postgresql"])
        stop_package_clusters(self.name)

    def initialise(self) -> None:
        owner = self._as_os_user()
        for folder in (self.home.parent, self.home, self.run_dir):
            if folder == self.home.parent and self.home == self.dir:
                continue  # the stack's own folder
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o700)
            if owner:
                os.chown(folder, owner["user"], owner["group"])
        if self.home != self.dir:
            (self.home / STACK_MARKER).write_text(f"{self.stack.root}\n")
            self._remove_orphans()
        if owner and subprocess.run(["test", "-w", str(self.run_dir)], check=False, **owner).returncode != 0:
            raise StackError(
                self.name,
                f"the server runs as the `{self.os_user}` user, which cannot write {self.run_dir}: check that "
                f"folder's owner and its parents' modes, or set {ENV_PREFIX}FERRETDB_BACKEND=sqlite",
            )
        if not (self.datadir / "PG_VERSION").exists():
            log.info("postgresql: initialising a private cluster in %s", self.datadir)
            _run(
                [
                    self._bin("initdb"),
                    f"--pgdata={self.datadir}",
                    f"--username={self.os_user}",
                    "--auth-local=peer",
                    "--auth-host=reject",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-instructions",
                ],
                self.name,
                timeout=120,
                cwd=self.home,
                **owner,
            )
        host = "127.0.0.1" if self.cfg.stack_host == "localhost" else self.cfg.stack_host
        hba = self.datadir / "pg_hba.conf"
        hba.write_text(
            "# Written by `tenderhub stack up` on every start; nothing else may connect.\n"
            f"local all {self.os_user} peer\n"
            f"host {FERRETDB_DATABASE} {FERRETDB_ROLE} {host}/32 scram-sha-256\n"
        )
        if owner:
            os.chown(hba, owner["user"], owner["group"])

    def command(self) -> list[str]:
        return [
            self._bin("postgres"),
            "-D",
            str(self.datadir),
            "-c",
            f"listen_addresses={self.cfg.stack_host}",
            "-c",
            f"port={self.port}",
            "-c",
            f"unix_socket_directories={self.run_dir}",
            "-c",
            "unix_socket_permissions=0700",
            "-c",
            "password_encryption=scram-sha-256",
            "-c",
            "shared_buffers=128MB",
            # FerretDB's capped-collection clean-up (every ferretdb_capped_cleanup_s) runs ANALYZE twice and VACUUM
            # ANALYZE on every capped collection: at the default target each samples 30,000 rows (~250 ms at 100,000
            # log documents), at 10 it samples 3,000 (~28 ms). FerretDB's filters are equalities on one field, which
            # an n_distinct estimate plans as well as a long histogram.
            "-c",
            f"default_statistics_target={PG_STATISTICS_TARGET}",
        ]

    def popen_options(self) -> dict[str, Any]:
        return self._as_os_user()

    def _psql(self, sql: str, database: str = "postgres") -> str:
        return _run(
            [
                self._bin("psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                f"--host={self.run_dir}",
                f"--port={self.port}",
                f"--username={self.os_user}",
                f"--dbname={database}",
            ],
            self.name,
            timeout=30,
            input=sql,
            cwd=self.home,
            **self._as_os_user(),
        )

    def check_health(self) -> None:
        if self._psql("SELECT 1;").strip() != "1":
            raise RuntimeError("SELECT 1 did not answer 1")

    def after_start(self) -> None:
        # Statements on stdin, the password as a SCRAM verifier: no secret on a command line or in the server's log.
        verifier = scram_sha256_verifier(self.stack.secrets["postgresql_ferretdb_password"])
        role, database = FERRETDB_ROLE, FERRETDB_DATABASE
        self._psql(
            f"SELECT 'CREATE ROLE {role}' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}')\\gexec\n"
            f"ALTER ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS "
            f"PASSWORD '{verifier}';\n"
            f"SELECT 'CREATE DATABASE {database} OWNER {role}' "
            f"WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{database}')\\gexec\n"
            f"REVOKE ALL ON DATABASE {database} FROM PUBLIC;\n"
            # Custom plans only: FerretDB's prepared queries name the field as a parameter (`_jsonb -> $1`), and only
            # a plan made with its value can match an index's expression.
            f"ALTER ROLE {role} SET plan_cache_mode = force_custom_plan;\n"
        )
        self._psql(FERRETDB_INDEX_TWINS_SQL, database=database)


class FerretDB(Service):
    name = "ferretdb"
    MODULE = "github.com/FerretDB/FerretDB"

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack)
        self.port = self.cfg.mongo_port
        self.binary = self.cfg.cache_dir / "bin" / f"ferretdb-{self.cfg.ferretdb_version}"

    def ensure_installed(self) -> None:
        if self.binary.exists():
            return
        if not shutil.which("go"):
            raise StackError(self.name, "Go >= 1.24 is needed to build FerretDB; install it from go.dev's tarball")
        log.info(
            "ferretdb: building FerretDB %s from its module source (about a minute)",
            self.cfg.ferretdb_version,
        )
        info = json.loads(
            _run(["go", "mod", "download", "-json", f"{self.MODULE}@{self.cfg.ferretdb_version}"], self.name)
        )
        self.binary.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.binary.parent) as tmp:
            src = Path(tmp) / "src"
            shutil.copytree(info["Dir"], src)
            for path in src.rglob("*"):
                path.chmod(path.stat().st_mode | 0o200)
            # `go install module@version` leaves build/version/version.txt empty and the binary panics at start;
            # the version file is what FerretDB's own release build writes.
            (src / "build" / "version" / "version.txt").write_text(self.cfg.ferretdb_version + "\n")
            out = Path(tmp) / "ferretdb"
            _run(
                ["go", "build", "-trimpath", "-o", str(out), "./cmd/ferretdb"],
                self.name,
                cwd=src,
                env={**os.environ, "CGO_ENABLED": "0"},
            )
            out.rename(self.binary)

    def start(self) -> bool:
        running = self.running_backend()
        if running is not None and running != self.cfg.ferretdb_backend:
            raise StackError(
                self.name,
                f"running on its {running} backend, but {ENV_PREFIX}FERRETDB_BACKEND is {self.cfg.ferretdb_backend}: "
                "run `tenderhub stack down`, then `up` (the other backend starts empty: `tenderhub rebuild` refills "
                "the derived stores from MySQL)",
            )
        return super().start()

    def running_backend(self) -> str | None:
        """The handler the running FerretDB was started with (from its command line); None when it is not running."""
        pid = self.running_pid()
        if pid is None:
            return None
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            return None
        return next((a.split("=", 1)[1] for a in args if a.startswith("--handler=")), None)

    def command(self) -> list[str]:
        host = self.cfg.stack_host
        if self.cfg.ferretdb_backend == "sqlite":
            data = self.dir / "data"
            data.mkdir(parents=True, exist_ok=True)
            backend = ["--handler=sqlite", f"--sqlite-url=file:{data}/"]
        else:
            # Its URL carries the role's password: it goes in the environment (popen_options), which `ps` does not show.
            backend = ["--handler=postgresql"]
        tls = self.stack.tls_dir
        listen = (
            [f"--listen-addr={host}:{self.port}"]
            if tls is None
            else [
                "--listen-addr=",  # TLS only
                f"--listen-tls={host}:{self.port}",
                f"--listen-tls-cert-file={tls / 'server.pem'}",
                f"--listen-tls-key-file={tls / 'server.key'}",
            ]
        )
        return [
            str(self.binary),
            *backend,
            *listen,
            f"--debug-addr={host}:{self.cfg.ferretdb_debug_port}",
            f"--state-dir={self.dir}",
            "--telemetry=disable",
            "--log-level=warn",
            f"--test-capped-cleanup-interval={self.cfg.ferretdb_capped_cleanup_s}s",
        ]

    def popen_options(self) -> dict[str, Any]:
        if self.cfg.ferretdb_backend == "sqlite":
            return {}
        return {"env": {**os.environ, "FERRETDB_POSTGRESQL_URL": self.stack.ferretdb_postgresql_url()}}

    def check_health(self) -> None:
        from pymongo import MongoClient

        client: MongoClient[dict[str, object]] = MongoClient(
            self.stack.mongo_url(), serverSelectionTimeoutMS=1500, connectTimeoutMS=1500
        )
        try:
            # `ping` answers without the storage; listing databases needs it (e.g. the PostgreSQL login).
            client.admin.command("listDatabases", nameOnly=True)
        finally:
            client.close()


class Redis(Service):
    """One redis-server: the stack's only one, or a node of its Redis Cluster (`redis_nodes` 6: three masters and
    three replicas, formed by `Stack.up` once all six answer)."""

    def __init__(self, stack: Stack, node: int = 1) -> None:
        # Node 1 keeps the single server's name, folder and port; the others of a cluster are redis-2 ... redis-6.
        self.node = node
        self.name = "redis" if node == 1 else f"redis-{node}"
        super().__init__(stack)
        self.port = redis_port(self.cfg, node)

    @property
    def port_setting(self) -> str:
        return "redis_port"

    def ensure_installed(self) -> None:
        if not shutil.which("redis-server"):
            apt_install(self.name, ["redis-server"])

    def initialise(self) -> None:
        conf = self.dir / "redis.conf"
        # The password lives in a 0600 file, not on the command line where `ps` shows it.
        write_private(
            conf,
            "\n".join(
                [
                    f"bind {self.cfg.stack_host}",
                    *self._port_lines(),
                    "protected-mode yes",
                    'save ""',
                    # The workers commit Kafka offsets for what Redis acknowledged (spend states, readiness facts, top
                    # lists): an append-only file keeps it across a kill or a restart, as production's compose file
                    # does. Written before each reply, so a killed process loses nothing it acknowledged; fsync once a
                    # second (only a crash of the machine can lose that second).
                    "appendonly yes",
                    "appendfsync everysec",
                    f"dir {self.dir}",
                    "daemonize no",
                    'logfile ""',
                    f"requirepass {self.stack.secrets['redis_password']}",
                    *self._cluster_lines(),
                    "",
                ]
            ),
        )

    def _cluster_lines(self) -> list[str]:
        if self.cfg.redis_nodes == 1:
            return []
        lines = [
            "cluster-enabled yes",
            f"cluster-config-file {self.dir / 'nodes.conf'}",
            # A master unreachable this long is failed over to its replica (the default, 15 s, stalls writers).
            "cluster-node-timeout 3000",
            # Replicas authenticate to their master with the stack's password.
            f"masterauth {self.stack.secrets['redis_password']}",
        ]
        if self.stack.tls_dir is not None:
            lines += ["tls-cluster yes", "tls-replication yes"]
        return lines

    def _port_lines(self) -> list[str]:
        tls = self.stack.tls_dir
        if tls is None:
            return [f"port {self.port}"]
        return [
            "port 0",  # TLS only
            f"tls-port {self.port}",
            f"tls-cert-file {tls / 'server.pem'}",
            f"tls-key-file {tls / 'server.key'}",
            f"tls-ca-cert-file {tls / 'ca.pem'}",
            "tls-auth-clients no",
        ]

    def command(self) -> list[str]:
        return [shutil.which("redis-server") or "redis-server", str(self.dir / "redis.conf")]

    def check_health(self) -> None:
        import redis

        client = redis.Redis.from_url(self.stack.redis_url(self.node), socket_timeout=1.5, socket_connect_timeout=1.5)
        try:
            client.ping()
        finally:
            client.close()


def redis_port(cfg: StackSettings, node: int) -> int:
    return cfg.redis_port + 100 * (node - 1)


def start_redis_servers(stack: Stack, timeout_s: float) -> list[Redis]:
    """Start the stack's Redis servers alone (no other service) and wait for them; six are then formed into one
    cluster. For tests and benchmarks that need a Redis Cluster of their own; the caller stops them."""
    servers = [svc for svc in stack.services if isinstance(svc, Redis)]
    for server in servers:
        server.ensure_installed()
        server.start()
    for server in servers:
        server.wait_healthy(timeout_s)
    if len(servers) > 1:
        form_redis_cluster(stack, timeout_s)
    return servers


def free_port_block(offsets: Sequence[int], low: int = 20_000, high: int = 40_000) -> int:
    """A base port such that base + each offset is free on 127.0.0.1 (the layout of a cluster's nodes)."""
    for _ in range(200):
        base = random.randrange(low, high)  # noqa: S311 - a port to try, not a secret
        if all(_bindable(base + d) for d in offsets):
            return base
    raise StackError("stack", f"no free port block for offsets {list(offsets)} in {low}-{high}")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def form_redis_cluster(stack: Stack, timeout_s: float, progress: Callable[[str], None] = log.info) -> None:
    """Make the stack's six Redis nodes one cluster (three masters with the 16,384 slots, a replica each) unless they
    are one already, then wait until every node reports it whole. Idempotent: a cluster formed before (its layout is
    kept in each node's nodes.conf) is only waited for."""
    import redis

    nodes = [svc for svc in stack.services if isinstance(svc, Redis)]
    first = redis.Redis.from_url(stack.redis_url(), socket_timeout=5, socket_connect_timeout=5)
    try:
        info = first.cluster("info")
    finally:
        first.close()
    if int(info.get("cluster_slots_assigned", 0)) == 0:
        cli = shutil.which("redis-cli") or "redis-cli"
        tls = [] if stack.tls_dir is None else ["--tls", "--cacert", str(stack.tls_dir / "ca.pem")]
        addresses = [f"{stack.cfg.stack_host}:{node.port}" for node in nodes]
        # The password reaches redis-cli through its environment, never its command line.
        env = {**os.environ, "REDISCLI_AUTH": stack.secrets["redis_password"]}
        _run(
            [cli, *tls, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            "redis",
            120,
            env=env,
        )
        progress(f"redis: cluster formed ({len(nodes) // 2} masters, a replica each)")
    # Whole: every node sees the cluster ok with all its nodes, and every replica has synced with its master (a
    # master lost before its replica synced could not be failed over).
    deadline = time.monotonic() + timeout_s
    waiting = [node.name for node in nodes]
    while waiting:
        waiting = []
        replicas = 0
        for node in nodes:
            client = redis.Redis.from_url(stack.redis_url(node.node), socket_timeout=2, socket_connect_timeout=2)
            try:
                state = client.cluster("info")
                replication = client.info("replication")
                known = client.cluster("nodes")
            finally:
                client.close()
            # As this node sees it (gossip spreads who replicates whom): every master has its replica.
            seen = sum(1 for peer in known.values() if "slave" in peer["flags"] and "fail" not in peer["flags"])
            if state.get("cluster_state") != "ok" or int(state.get("cluster_known_nodes", 0)) != len(nodes):
                waiting.append(node.name)
            elif seen != len(nodes) // 2:
                waiting.append(f"{node.name} (sees {seen} replicas)")
            elif replication.get("role") == "slave":
                if replication.get("master_link_status") == "up" and not replication.get("master_sync_in_progress"):
                    replicas += 1
                else:
                    waiting.append(f"{node.name} (replica syncing)")
        if not waiting and replicas != len(nodes) // 2:
            waiting.append(f"replicas: {replicas} of {len(nodes) // 2} attached")
        if waiting and time.monotonic() > deadline:
            raise StackError("redis", f"cluster not whole after {timeout_s:.0f} s: {', '.join(waiting)}")
        if waiting:
            time.sleep(0.3)


class Stack:
    """The services, their shared secrets and the env file the rest of tenderhub reads."""

    # In start order (`down` stops in reverse): PostgreSQL before the FerretDB that stores in it.
    SERVICE_TYPES: tuple[type[Service], ...] = (MariaDB, Kafka, PostgreSQL, FerretDB, Redis)

    def __init__(self, cfg: StackSettings) -> None:
        self.cfg = cfg
        self.root = cfg.stack_dir.resolve()
        self._every: list[Service] = []
        for kind in self.SERVICE_TYPES:
            if kind is Kafka:
                self._every += [Kafka(self, node) for node in range(1, cfg.kafka_brokers + 1)]
            elif kind is Redis:
                self._every += [Redis(self, node) for node in range(1, cfg.redis_nodes + 1)]
            else:
                self._every.append(kind(self))
        # PostgreSQL only serves FerretDB's postgresql backend.
        self.services = [s for s in self._every if cfg.ferretdb_backend == "postgresql" or type(s) is not PostgreSQL]
        self._secrets: dict[str, str] | None = None

    @property
    def env_file(self) -> Path:
        return self.root / "tenderhub.env"

    @property
    def secrets(self) -> dict[str, str]:
        """Random passwords made on first use and kept (0600) with the stack's data."""
        if self._secrets is None:
            path = self.root / "secrets.json"
            kept: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
            # A stack made before a secret existed gets it now; the existing ones never change.
            self._secrets = kept | {k: secrets.token_urlsafe(18) for k in SECRET_NAMES if k not in kept}
            if self._secrets != kept:
                self.root.mkdir(parents=True, exist_ok=True)
                write_private(path, json.dumps(self._secrets))
        return self._secrets

    @property
    def tls_dir(self) -> Path | None:
        return self.cfg.stack_tls_dir

    def _ca(self) -> str:
        assert self.tls_dir is not None
        return quote(str(self.tls_dir / "ca.pem"), safe="/")

    def _mysql_url(self, user: str, secret: str) -> str:
        pw = quote(self.secrets[secret], safe="")
        tls = "" if self.tls_dir is None else f"?ssl_ca={self._ca()}"
        return f"mysql+pymysql://{user}:{pw}@{self.cfg.stack_host}:{self.cfg.mysql_port}/{DATABASE}{tls}"

    def mongo_url(self) -> str:
        tls = "" if self.tls_dir is None else f"?tls=true&tlsCAFile={self._ca()}"
        return f"mongodb://{self.cfg.stack_host}:{self.cfg.mongo_port}/{tls}"

    def kafka_bootstrap(self) -> str:
        return ",".join(
            f"{self.cfg.stack_host}:{kafka_port(self.cfg, n)}" for n in range(1, self.cfg.kafka_brokers + 1)
        )

    def kafka_settings(self) -> dict[str, str]:
        """The Kafka client settings of the env file (without the prefix)."""
        values = {"KAFKA_BOOTSTRAP": self.kafka_bootstrap(), "KAFKA_REPLICATION_FACTOR": str(self.cfg.kafka_brokers)}
        if self.tls_dir is not None:
            values |= {
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": KAFKA_SASL_MECHANISM,
                "KAFKA_SASL_USERNAME": KAFKA_CLIENT_USER,
                "KAFKA_SASL_PASSWORD": self.secrets["kafka_client_password"],
                "KAFKA_SSL_CAFILE": str(self.tls_dir / "ca.pem"),
            }
        return values

    def kafka_client_options(self) -> dict[str, Any]:
        """aiokafka arguments for the stack's own checks: the values the env file gives every client, built by the
        clients' own code."""
        from schema.kafka_client import client_options

        values = self.kafka_settings()
        if self.tls_dir is None:
            return client_options(values["KAFKA_BOOTSTRAP"])
        return client_options(
            values["KAFKA_BOOTSTRAP"],
            values["KAFKA_SECURITY_PROTOCOL"],
            cafile=values["KAFKA_SSL_CAFILE"],
            mechanism=values["KAFKA_SASL_MECHANISM"],
            username=values["KAFKA_SASL_USERNAME"],
            password=values["KAFKA_SASL_PASSWORD"],
        )

    def ferretdb_postgresql_url(self) -> str:
        pw = quote(self.secrets["postgresql_ferretdb_password"], safe="")
        return f"postgres://{FERRETDB_ROLE}:{pw}@{self.cfg.stack_host}:{self.cfg.postgresql_port}/{FERRETDB_DATABASE}"

    def redis_url(self, node: int = 1) -> str:
        """The URL of a Redis node (node 1: the one the env file names; a cluster client finds the others)."""
        scheme, tls = ("redis", "") if self.tls_dir is None else ("rediss", f"?ssl_ca_certs={self._ca()}")
        pw = quote(self.secrets["redis_password"], safe="")
        return f"{scheme}://:{pw}@{self.cfg.stack_host}:{redis_port(self.cfg, node)}/0{tls}"

    def write_env_file(self) -> None:
        values = {
            "MYSQL_URL": self._mysql_url(APP_USER, "mysql_app_password"),
            "MYSQL_ADMIN_URL": self._mysql_url(ADMIN_USER, "mysql_admin_password"),
            "RELAY_MYSQL_URL": self._mysql_url(RELAY_USER, "mysql_relay_password"),
            "MYSQL_READER_URL": self._mysql_url(READER_USER, "mysql_reader_password"),
            **self.kafka_settings(),
            "MONGO_URL": self.mongo_url(),
            "REDIS_URL": self.redis_url(),
            "REDIS_CLUSTER": str(self.cfg.redis_nodes > 1).lower(),
            # The other nodes, for a client starting while node 1 is down.
            "REDIS_CLUSTER_NODES": ",".join(
                f"{self.cfg.stack_host}:{redis_port(self.cfg, n)}" for n in range(2, self.cfg.redis_nodes + 1)
            ),
            # The dev stack's own users connect over TCP from this machine only.
            "MYSQL_GRANT_HOST": self.cfg.stack_host,
        }
        text = "# Written by `tenderhub stack up`: connection settings of the local stack.\n" + "".join(
            f"{ENV_PREFIX}{k}={v}\n" for k, v in values.items()
        )
        write_private(self.env_file, text)

    # The layout a stack folder keeps (made with): file name -> (StackSettings field, what it counts, why it stays).
    LAYOUT: ClassVar[dict[str, tuple[str, str, str]]] = {
        "kafka-brokers": ("kafka_brokers", "Kafka broker(s)", "topics and their replicas are laid out for the count"),
        "redis-nodes": ("redis_nodes", "Redis node(s)", "a cluster's slots and replicas live in its nodes' files"),
    }

    @classmethod
    def recorded_layout(cls, stack_dir: Path) -> dict[str, int]:
        """The broker and Redis node counts a stack folder was made with, by StackSettings field (none recorded for a
        folder not made yet; a folder made before Redis Cluster mode has one Redis)."""
        counts: dict[str, int] = {}
        for name, (field, _, _) in cls.LAYOUT.items():
            try:
                counts[field] = int((stack_dir / name).read_text())
            except (OSError, ValueError):
                continue
        if counts and "redis_nodes" not in counts:
            counts["redis_nodes"] = 1
        return counts

    def up(self, progress: Callable[[str], None] = log.info) -> None:
        recorded = self.recorded_layout(self.root)
        for name, (field, what, why) in self.LAYOUT.items():
            wanted = getattr(self.cfg, field)
            if recorded.get(field, wanted) != wanted:
                raise StackError(
                    name.split("-")[0],
                    f"this stack folder was made with {recorded[field]} {what}, not {wanted}: run `tenderhub stack "
                    f"down --purge` first ({why})",
                )
        self.root.mkdir(parents=True, exist_ok=True)
        for name, (field, _, _) in self.LAYOUT.items():
            (self.root / name).write_text(f"{getattr(self.cfg, field)}\n")
        for svc in self.services:
            svc.ensure_installed()
        started: list[Service] = []
        ready: list[Service] = []

        def make_ready(svc: Service) -> None:
            svc.wait_healthy(self.cfg.health_timeout_s)
            svc.after_start()
            ready.append(svc)
            if svc in started:
                progress(f"{svc.name}: healthy on {self.cfg.stack_host}:{svc.port} (pid {svc.running_pid()})")

        for svc in self.services:
            if svc.start():
                started.append(svc)
            else:
                progress(f"{svc.name}: already running (pid {svc.running_pid()})")
            if svc.gate:
                make_ready(svc)
        for svc in self.services:
            if svc not in ready:
                make_ready(svc)
        if self.cfg.redis_nodes > 1:
            form_redis_cluster(self, self.cfg.health_timeout_s, progress)
        self.write_env_file()
        progress(f"settings written to {self.env_file}")

    def down(self, purge: bool = False, progress: Callable[[str], None] = log.info) -> None:
        # Every service type, configured or not: a PostgreSQL left from before a switch to SQLite stops too. The
        # brokers of a cluster stop together: one left alone without its controller quorum never finishes.
        brokers = [svc for svc in self._every if isinstance(svc, Kafka)]
        for svc in reversed(self._every):
            if isinstance(svc, Kafka) and svc is not brokers[0]:
                continue
            stopped = stop_together(brokers) if isinstance(svc, Kafka) else {svc.name: svc.stop()}
            for name, was_running in stopped.items():
                if was_running:
                    progress(f"{name}: stopped")
                elif svc in self.services:
                    progress(f"{name}: was not running")
        if purge and self.root.exists():
            self._check_purgeable()
        if purge:
            for svc in self._every:
                svc.purge()
        if purge and self.root.exists():
            shutil.rmtree(self.root)
            progress(f"removed {self.root}")

    def _check_purgeable(self) -> None:
        """`down --purge` deletes the folder: only one the stack made (a file only the stack writes in it: its
        secrets, env file or layout), never the home folder, one holding it, or /. A mistyped or empty
        TENDERHUB_STACK_DIR (the working directory, say a checkout) deletes nothing."""
        root = self.root.resolve()
        home = Path.home().resolve()
        marks = ("secrets.json", "tenderhub.env", *self.LAYOUT)
        if root in (home, *home.parents) or not any((root / name).is_file() for name in marks):
            raise StackError(
                "stack",
                f"{root} is not a stack folder that can be purged (none of {', '.join(marks)} in it, or it is the "
                "home folder or one holding it); the services were stopped, nothing was deleted. Fix: point "
                "TENDERHUB_STACK_DIR at the stack's own folder.",
            )

    def status(self) -> list[ServiceStatus]:
        """The configured services, and any other this stack started that still runs."""
        return [svc.status() for svc in self._every if svc in self.services or svc.running_pid() is not None]
