"""Every tenderhub setting, declared once: type, default, environment variable and a line of doc.

This is the only module that reads the environment. Values come from `TENDERHUB_*` variables, then from the env
file the dev stack writes (`.stack/tenderhub.env`, or the file named by `TENDERHUB_ENV_FILE`), then from files in
`TENDERHUB_SECRETS_DIR` (one per setting, as container secrets are mounted). Bad values fail at
start-up with a `SettingsError` that names the variable and says how to fix it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, Self, TypeVar, get_args
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from croniter import croniter
from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

ENV_PREFIX = "TENDERHUB_"
DEFAULT_ENV_FILE = ".stack/tenderhub.env"
# Settings' parsed URLs, cached per object (see Settings.model_copy).
_CACHED = ("mysql", "relay_mysql", "mysql_admin", "mysql_reader")


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the variable and the fix."""


def _env_file() -> str:
    # The env file's own location cannot live inside the settings it configures.
    return os.environ.get(f"{ENV_PREFIX}ENV_FILE", DEFAULT_ENV_FILE)


def mixed_sources() -> list[str]:
    """The variables the default env file (the dev stack's, read because TENDERHUB_ENV_FILE is not set) fills in while
    the environment sets store URLs of its own, or a secrets folder holds settings: an operator who exported production
    URLs (or mounted secrets) from inside a checkout would otherwise get the dev stack's values without a word (the
    env file even wins over the secrets folder). [] when nothing is mixed."""
    if f"{ENV_PREFIX}ENV_FILE" in os.environ or not Path(DEFAULT_ENV_FILE).is_file():
        return []
    urls = [k for k in os.environ if k.startswith(ENV_PREFIX) and k.endswith("_URL")]
    secrets = os.environ.get(f"{ENV_PREFIX}SECRETS_DIR")
    if secrets and Path(secrets).is_dir():
        # The env file comes before the secrets folder: its dev URLs would win over the secrets' own.
        urls += [p.name for p in Path(secrets).iterdir() if p.name.lower().startswith("tenderhub_")]
    if not urls:
        return []
    try:
        lines = Path(DEFAULT_ENV_FILE).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeError):
        return []
    names = {line.partition("=")[0].strip() for line in lines if "=" in line and not line.lstrip().startswith("#")}
    return sorted(n for n in names if n.startswith(ENV_PREFIX) and n not in os.environ)


def _secrets_dir() -> str | None:
    """`TENDERHUB_SECRETS_DIR` (e.g. /run/secrets): a folder of files, one per secret setting, named like its
    variable (`tenderhub_kafka_sasl_password`), holding the value. The environment and the env file come first."""
    folder = os.environ.get(f"{ENV_PREFIX}SECRETS_DIR")
    if folder and not Path(folder).is_dir():
        raise SettingsError(f"{ENV_PREFIX}SECRETS_DIR={folder} is not a folder")
    return folder or None


def _url_parts(v: SecretStr, schemes: tuple[str, ...], shape: str) -> SplitResult:
    """The parts of a store URL with a known scheme, a host (but for a Unix socket) and a port in 1-65535 if any.
    Never repeats the URL: a password holding `/`, `?`, `#` or `@` unencoded splits it elsewhere, and the piece the
    parser then takes for a port is part of the password."""
    text = v.get_secret_value().strip()  # a secret written with `echo` ends in a newline; the drivers strip it too
    if not text.isprintable() or any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        raise ValueError(f"expected {shape}; the URL holds characters that are not printable text")
    try:
        parts = urlsplit(text)
    except ValueError:  # its own message would quote a piece of the URL (a password holding brackets)
        raise ValueError(f"expected {shape} (percent-encode @ : / ? # [ ] in the user name and password)") from None
    if parts.scheme not in schemes:
        raise ValueError(f"expected {shape}")
    if parts.scheme == "unix":
        return parts
    hint = "percent-encode @ : / ? # in the user name and password"
    hosts = parts.netloc.rpartition("@")[2]
    try:
        ports = [parts.port] if "," not in hosts else [urlsplit(f"//{h}").port for h in hosts.split(",")]
    except ValueError:
        raise ValueError(f"expected {shape}: the port is not a number from 1 to 65535 ({hint})") from None
    if any(port is not None and not 0 < port < 65536 for port in ports):
        raise ValueError(f"expected {shape}: a port is 1-65535")
    if not parts.hostname and not ("," in hosts and all(h.strip() for h in hosts.split(","))):
        raise ValueError(f"expected {shape}: no host ({hint})")
    return parts


class _Base(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        # No number setting takes inf or nan.
        allow_inf_nan=False,
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    log_json: bool = Field(False, description="Write logs as JSON lines (production).")

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_unset(cls, v: Any, info: ValidationInfo) -> Any:
        """An empty value of a setting that may be unset means unset (`TENDERHUB_AS_OF=` is the real clock, an
        empty TLS folder is none, not the working directory). An empty value still overrides the env file, and a
        text setting keeps it (`TENDERHUB_TOPIC_PREFIX=` means topics without a prefix)."""
        if v == "" and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if type(None) in get_args(annotation):
                return None
        return v


def _host_ports(text: str) -> list[tuple[str, int]]:
    """`host:port,host:port` as (host, port) pairs (an IPv6 host in brackets); [] for an empty string."""
    out = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        host, _, port = item.rpartition(":")
        out.append((host.strip("[]"), int(port)))
    return out


class StackSettings(_Base):
    """Where and how the local dev/test stack runs (tenderhub stack up | down | status)."""

    stack_dir: Path = Field(Path(".stack"), description="Folder for the stack's data, logs and PID files.")
    cache_dir: Path = Field(
        Path.home() / ".cache" / "tenderhub",
        description="Machine-wide download cache (Kafka jars, FerretDB binary, Python wheels).",
    )
    stack_host: str = Field("127.0.0.1", description="Address every local service binds to.")
    mysql_port: int = Field(13306, ge=1024, le=65535, description="Local MariaDB port.")
    kafka_port: int = Field(19092, ge=1024, le=65535, description="Local Kafka broker port.")
    kafka_controller_port: int = Field(19093, ge=1024, le=65535, description="Local KRaft controller port.")
    kafka_brokers: Literal[1, 3] = Field(
        1,
        description="Kafka brokers of the local stack: 1, or 3 (`stack up --cluster`; each a broker and a KRaft "
        "controller on kafka_port + 100 * n and kafka_controller_port + 100 * n, topics at replication factor 3 with "
        "min.insync.replicas 2). A stack folder keeps the count it was made with.",
    )
    mongo_port: int = Field(37017, ge=1024, le=65535, description="Local FerretDB (MongoDB wire) port.")
    ferretdb_debug_port: int = Field(38088, ge=1024, le=65535, description="FerretDB debug/metrics port.")
    ferretdb_backend: Literal["postgresql", "sqlite"] = Field(
        "postgresql",
        description="FerretDB's storage: 'postgresql' (a private PostgreSQL of the stack) or 'sqlite' (files; guarded "
        "updates of readiness scores 20-30x slower, see bench/README.md). Switching needs `stack down` first.",
    )
    postgresql_port: int = Field(
        15432,
        ge=1024,
        le=65535,
        description="Local PostgreSQL port (FerretDB's storage when its backend is postgresql).",
    )
    redis_port: int = Field(16379, ge=1024, le=65535, description="Local Redis port.")
    redis_nodes: Literal[1, 6] = Field(
        1,
        description="Redis servers of the local stack: 1, or 6 (`stack up --cluster`): a Redis Cluster of three "
        "masters and three replicas on redis_port + 100 * n (cluster bus + 10000). A stack folder keeps the count it "
        "was made with.",
    )
    kafka_version: str = Field("4.1.1", description="Apache Kafka version fetched from Maven Central.")
    ferretdb_version: str = Field("v1.24.2", description="FerretDB version built from its Go module source.")
    kafka_heap: str = Field("768m", description="Kafka JVM heap (-Xmx).")
    health_timeout_s: float = Field(90.0, gt=0, le=3600, description="Seconds `stack up` waits for each service.")
    ferretdb_capped_cleanup_s: int = Field(
        10, ge=1, description="FerretDB capped-collection clean-up interval (seconds) for the dev stack."
    )

    stack_tls_dir: Path | None = Field(
        None,
        description="A folder with ca.pem, server.pem and server.key (PEM; the certificate names the stack's address): "
        "the stack then serves TLS only (Kafka SASL_SSL with SCRAM, MariaDB requiring TLS, FerretDB and Redis over "
        "TLS) and writes the client settings for it. Set it before the first `stack up` (Kafka's users are made "
        "when its storage is formatted).",
    )

    @field_validator("stack_tls_dir")
    @classmethod
    def _tls_material(cls, v: Path | None) -> Path | None:
        if v is None or str(v) == "":
            return None
        v = v.resolve()
        missing = [name for name in ("ca.pem", "server.pem", "server.key") if not (v / name).is_file()]
        if missing:
            raise ValueError(f"{v} lacks {', '.join(missing)}")
        return v

    @field_validator("stack_host")
    @classmethod
    def _loopback_only(cls, v: str) -> str:
        if not v.startswith("127.") and v != "localhost":
            raise ValueError("the dev stack binds to loopback only; use 127.0.0.1")
        return v


class Settings(_Base):
    """Connections and pipeline behaviour, shared by the relay, the workers and the CLI."""

    mysql_url: SecretStr = Field(
        description="Application's MySQL URL (mysql+pymysql://user:password@host:port/db): DML on business tables."
    )
    mysql_admin_url: SecretStr | None = Field(
        None, description="MySQL URL with DDL and GRANT rights, used only by `tenderhub migrate`."
    )
    relay_mysql_url: SecretStr = Field(
        description="MySQL URL of the CDC relay's least-privilege user (replication + outbox rights only)."
    )
    mysql_reader_url: SecretStr | None = Field(
        None,
        description="MySQL URL of a read-only user (SELECT on the database, the outbox included), used by "
        "`tenderhub verify` and `rebuild`; `tenderhub migrate` creates it when set.",
    )
    kafka_bootstrap: str = Field(description="Kafka bootstrap servers, host:port[,host:port].")
    kafka_replication_factor: int = Field(
        1,
        ge=1,
        le=7,
        description="Replication factor of the topics `migrate` creates; min.insync.replicas is 2 from 3 replicas "
        "on (production: 3 brokers or more, so one can fail without stopping the relay's acks=all writes).",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="How every Kafka client (relay, workers, tools) talks to the brokers; production: SASL_SSL.",
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism when the protocol is SASL_*."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user (needed when the protocol is SASL_*).")
    kafka_sasl_password: SecretStr | None = Field(None, description="SASL password of kafka_sasl_username.")
    kafka_ssl_cafile: str | None = Field(
        None,
        description="PEM file of the CA that signed the brokers' certificates (SSL, SASL_SSL); empty = system CAs.",
    )
    kafka_ssl_certfile: str | None = Field(None, description="PEM client certificate, for brokers that require one.")
    kafka_ssl_keyfile: str | None = Field(None, description="PEM private key of kafka_ssl_certfile.")
    kafka_ssl_check_hostname: bool = Field(
        True, description="Check that a broker's certificate names the host connected to (leave on in production)."
    )
    mongo_url: SecretStr = Field(description="MongoDB URL (mongodb://host:port/).")
    mongo_db: str = Field("tenderhub", description="MongoDB database name.")
    redis_url: SecretStr = Field(description="Redis URL (redis://[:password@]host:port/db).")
    redis_cluster: bool = Field(
        False,
        description="REDIS_URL names one node of a Redis Cluster: clients find the others, send each key to its slot's "
        "master and follow failovers (database 0 only; keys that one script touches share a hash tag).",
    )
    redis_cluster_nodes: str = Field(
        "",
        pattern=r"^([A-Za-z0-9.\-\[\]:]+:\d{1,5}(,[A-Za-z0-9.\-\[\]:]+:\d{1,5})*)?$",
        description="More nodes of the Redis Cluster (host:port,host:port) a client may start from when the node "
        "REDIS_URL names is down; they take the URL's credentials and TLS settings.",
    )
    as_of: dt.date | None = Field(
        None,
        description="The date treated as 'now' for open / closing-soon (YYYY-MM-DD); empty = real clock.",
    )
    mysql_grant_host: str = Field(
        "localhost",
        description="Host part of the app and relay MySQL accounts that `migrate` creates (the hosts they connect "
        "from: e.g. 127.0.0.1, or a subnet pattern such as 10.0.1.%; avoid a bare %).",
    )
    relay_mode: Literal["binlog", "polling"] = Field(
        "binlog", description="How the relay reads the outbox: tail the binlog, or poll the table."
    )
    topic_prefix: str = Field("tenderhub.", description="Prefix of every Kafka topic tenderhub declares.")
    topic_map: dict[str, str] = Field(
        default_factory=dict,
        description='Topic per aggregate type, overriding prefix+type, as JSON: {"tender": "prod.tenders"}.',
    )
    relay_source_name: str = Field(
        "main",
        pattern=r"^[a-z0-9_-]{1,40}$",
        description="Name of the MySQL source; keys the relay position and the shared Kafka transactional id.",
    )
    relay_server_id: int = Field(
        4_200_001, ge=1, le=4_294_967_295, description="Replica server_id the relay registers with (unique per source)."
    )
    relay_batch_rows: int = Field(2000, ge=1, le=100_000, description="Most outbox rows in one Kafka transaction.")
    relay_decoder: Literal["process", "thread"] = Field(
        "process",
        description="Where the binlog is decoded and records are built: a process of its own (the relay uses two "
        "cores) or a thread of the relay's process (one core).",
    )
    relay_linger_ms: int = Field(5, ge=0, le=10_000, description="How long a partial batch waits for more rows.")
    relay_commit_gap_ms: int = Field(
        0,
        ge=0,
        le=1000,
        description="Least time from the end of one Kafka transaction to the start of the next, unless a batch is "
        "full: at a trickle, fewer and larger transactions (each is several broker requests and a marker per "
        "partition) for up to this much added latency. 0: a batch goes out as soon as the binlog is idle.",
    )
    relay_heartbeat_s: float = Field(
        2.0, gt=0, le=60, description="Binlog heartbeat period: how fast the relay notices a dead connection."
    )
    relay_transaction_timeout_ms: int = Field(
        120_000, ge=1000, description="Kafka transaction timeout (a dead relay's open transaction aborts after it)."
    )
    relay_backfill_max_rows: int = Field(
        500_000,
        ge=1,
        le=1_000_000,  # they share one transaction's slot of the source_seq clock (2^20 rows)
        description="Most unpublished rows a first start publishes in its one backfill transaction.",
    )
    relay_gtid_domain: int = Field(
        0,
        ge=0,
        le=(1 << 32) - 1,
        description="MariaDB: the GTID domain the application writes outbox rows in (other domains are tracked, "
        "and may carry no outbox row).",
    )
    relay_mysql_snapshot_lock: bool = Field(
        True,
        description="MySQL: a first start or --resnapshot reads the outbox under a brief FLUSH TABLES WITH READ "
        "LOCK, so `migrate` grants the relay RELOAD. False: no RELOAD; the relay must start with --from-now.",
    )
    relay_mark_published: bool = Field(
        True,
        description="Binlog mode: record the ids Kafka committed as runs in integration_outbox_published (the janitor, "
        "a resnapshot and integration_outbox_status go by them).",
    )
    relay_poll_interval_ms: int = Field(
        200, ge=10, le=60_000, description="Polling mode: pause between polls that found nothing."
    )
    relay_retention_hours: float = Field(
        72.0, gt=0, le=87_600, description="The janitor deletes published outbox rows older than this."
    )
    relay_partition_ids: int = Field(
        1_000_000,
        ge=100,
        le=10**12,
        description="Ids per outbox partition: the janitor drops a partition once every row of it was published "
        "more than the retention ago (a partitioned outbox, migration 0003; an unpartitioned one is cleaned row by "
        "row).",
    )
    relay_lock_timeout_s: int = Field(
        6,
        ge=2,
        le=3600,
        description="A paused or unreachable active relay loses the leader lock after this many idle seconds.",
    )
    relay_metrics_addr: str = Field(
        "127.0.0.1:9400", pattern=r"^[0-9.]+:[0-9]{1,5}$", description="host:port of the relay's Prometheus endpoint."
    )
    activity_log_max_bytes: int = Field(
        256 * 1024 * 1024, ge=4096, description="Size cap of the capped user_activity_logs collection."
    )
    activity_log_max_docs: int = Field(1_000_000, ge=1, description="Document cap of user_activity_logs.")
    redis_key_prefix: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_.:-]{0,64}$",
        description="Prefix of every Redis key tenderhub writes (several deployments or tests on one Redis).",
    )
    worker_group: str = Field(
        "tenderhub-worker",
        pattern=r"^[A-Za-z0-9._-]{1,100}$",
        description="Kafka consumer group of the stream workers' data topics (one group per deployment); the Faust "
        "app that hosts them elects its timers' leader in '<group>-control'.",
    )
    worker_web_host: str = Field("127.0.0.1", description="Address the Faust web view binds to.")
    worker_web_port: int = Field(16066, ge=1024, le=65535, description="Port of the Faust web view.")
    dashboard_refresh_s: float = Field(
        5.0,
        ge=1,
        le=300,
        description="How often the pipeline dashboard (the web view's /dashboard/) samples the pipeline while "
        "someone watches it; nothing is sampled while nobody does.",
    )
    dashboard_api_metrics_url: str | None = Field(
        None,
        description="Where the dashboard reads the read service's cache hits (default: its /metrics at api_host, "
        "api_port; https when api_tls_cert is set, trusting that certificate).",
    )
    worker_batch_max: int = Field(
        1000, ge=1, le=100_000, description="Most events the worker reads from Kafka in one batch."
    )
    worker_batch_within_ms: int = Field(
        20,
        ge=1,
        le=60_000,
        description="How long the worker waits to fill a batch before it processes what it has (a full batch is "
        "handed on at once).",
    )
    worker_fetch_max_wait_ms: int = Field(
        100,
        ge=1,
        le=1500,
        description="Longest the broker holds a worker's fetch that finds nothing committed (bounds an idle agent's "
        "pause once data arrives; lower = more fetch requests while idle).",
    )
    worker_session_timeout_ms: int = Field(
        60_000,
        ge=6_000,
        le=300_000,
        description="How long the consumer group waits for a worker that went silent (SIGKILL, a lost host) before "
        "its partitions go to another worker; also how long a rebalance waits for a worker to end its batch.",
    )
    worker_store_retry_max_s: float = Field(
        30.0, gt=0, le=3600, description="Longest pause between retries while MongoDB or Redis is unreachable."
    )
    summary_backend: Literal["extractive", "transformers"] = Field(
        "extractive",
        description="Summariser: 'extractive' (offline, no model) or 'transformers' (seq2seq, see SUMMARY_MODEL).",
    )
    summary_model: str | None = Field(
        None,
        description="transformers backend: a local model directory or a model name (default facebook/bart-large-cnn).",
    )
    summary_max_input_tokens: int | None = Field(
        None, ge=16, description="transformers backend: tokens per chunk (default: the model's own limit)."
    )
    summary_max_tokens: int = Field(142, ge=1, description="transformers backend: longest summary of one chunk.")
    summary_num_beams: int = Field(4, ge=1, le=16, description="transformers backend: beams of generate().")
    summary_batch_size: int = Field(8, ge=1, le=256, description="transformers backend: chunks per generate() call.")
    summary_sentences: int = Field(3, ge=1, le=20, description="extractive backend: sentences kept.")
    readiness_top_k: int = Field(5, ge=1, le=100, description="How many open tenders a team's top list holds.")
    readiness_weights: dict[str, float] = Field(
        default_factory=dict,
        description='Readiness weights overriding the defaults, as JSON summing to 100: {"sector": 40, "cidb": 20}.',
    )
    readiness_sweep_s: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="How often the leader sweeps tenders whose closing date passed out of top lists, and rescores "
        "the next tenders whose scores came from other rules.",
    )
    api_host: str = Field("127.0.0.1", description="Address the read service (`tenderhub api`) binds to.")
    api_port: int = Field(16080, ge=1024, le=65535, description="Port of the read service.")
    api_trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or networks of proxies in front of the read service (e.g. "
        "127.0.0.1,10.0.0.0/8): a request from one is counted against the client X-Forwarded-For names, not the proxy.",
    )
    api_public_open: bool = Field(
        False,
        description="Serve public data (tenders, spend) without a token. Team-scoped data always needs one.",
    )
    api_requests_per_minute: int = Field(
        600, ge=1, le=1_000_000, description="Requests one token may make per minute (then 429 with Retry-After)."
    )
    api_searches_per_day: int = Field(
        2000, ge=1, le=100_000_000, description="Searches one token (or client address) may make per day, UTC."
    )
    api_token_cache_s: float = Field(
        10.0,
        ge=0,
        le=300,
        description="How long the read service trusts a token it looked up (a revocation takes effect within it).",
    )
    api_tls_cert: str | None = Field(None, description="PEM certificate file: the read service serves HTTPS with it.")
    api_tls_key: str | None = Field(None, description="PEM private key file of api_tls_cert.")
    spend_window_days: int = Field(30, ge=1, le=3650, description="Rolling window of the windowed spend key.")
    spend_recompute_cron: str = Field(
        "0 2 * * *", description="When the leader recomputes spend from MySQL (crontab syntax, worker timezone)."
    )
    spend_window_refresh_s: float = Field(
        60.0,
        gt=0,
        le=86_400,
        description="How often the leader rebuilds the windowed spend from tender states (ageing).",
    )

    @field_validator("api_trusted_proxies")
    @classmethod
    def _proxies(cls, v: str) -> str:
        for part in filter(None, (p.strip() for p in v.split(","))):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"{part[:60]!r} is not an IP address or network") from None
        return v

    @property
    def api_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(
            ipaddress.ip_network(p.strip(), strict=False) for p in self.api_trusted_proxies.split(",") if p.strip()
        )

    @field_validator("spend_recompute_cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        if not croniter.is_valid(v):
            raise ValueError('expected a crontab line of five fields, such as "0 2 * * *"')
        return v

    @field_validator("mysql_url", "mysql_admin_url", "relay_mysql_url", "mysql_reader_url")
    @classmethod
    def _mysql_scheme(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            parts = _url_parts(v, ("mysql", "mysql+pymysql"), "mysql+pymysql://user:password@host:port/database")
            if not parts.path.strip("/"):
                raise ValueError("expected mysql+pymysql://user:password@host:port/database (no database named)")
            mysql_tls_kwargs(parts.query)
        return v

    @field_validator("mongo_url")
    @classmethod
    def _mongo_scheme(cls, v: SecretStr) -> SecretStr:
        _url_parts(v, ("mongodb", "mongodb+srv"), "mongodb://host:port/")
        return v

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, v: SecretStr) -> SecretStr:
        _url_parts(v, ("redis", "rediss", "unix"), "redis://[:password@]host:port/db")
        return v

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
    @classmethod
    def _readable_file(cls, v: str | None) -> str | None:
        if v and not os.access(v, os.R_OK):
            raise ValueError(f"{v} is not a readable file")
        return v or None

    @model_validator(mode="after")
    def _kafka_security(self) -> Self:
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"kafka_security_protocol {self.kafka_security_protocol} needs {ENV_PREFIX}KAFKA_SASL_USERNAME and "
                f"{ENV_PREFIX}KAFKA_SASL_PASSWORD"
            )
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ValueError("kafka_ssl_certfile and kafka_ssl_keyfile go together")
        return self

    @property
    def redis_startup_nodes(self) -> list[tuple[str, int]]:
        """REDIS_CLUSTER_NODES as (host, port) pairs ([] when unset)."""
        return _host_ports(self.redis_cluster_nodes)

    @field_validator("redis_cluster_nodes")
    @classmethod
    def _cluster_ports(cls, v: str) -> str:
        for host, port in _host_ports(v):
            if not 0 < port < 65536:
                raise ValueError(f"{host}:{port}: a port is 1-65535")
        return v

    @model_validator(mode="after")
    def _redis_cluster_url(self) -> Self:
        if self.redis_cluster:
            url = urlsplit(self.redis_url.get_secret_value())
            if url.scheme == "unix" or url.path.strip("/") not in ("", "0"):
                raise ValueError(
                    f"{ENV_PREFIX}REDIS_CLUSTER needs a redis:// or rediss:// URL of database 0 (a cluster has no "
                    "other database and no Unix socket)"
                )
        return self

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, v: str) -> str:
        for server in v.split(","):
            if not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+:\d{1,5}", server.strip()):
                raise ValueError("expected host:port[,host:port]")
            if not 0 < int(server.strip().rpartition(":")[2]) < 65536:
                raise ValueError(f"{server.strip()}: a port is 1-65535")
        return v

    @field_validator("topic_map")
    @classmethod
    def _topic_map(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v.values():
            if not re.fullmatch(r"[A-Za-z0-9._\-]{1,249}", name):
                raise ValueError(f"{name!r} is not a valid Kafka topic name")
        return v

    @field_validator("topic_prefix")
    @classmethod
    def _topic_prefix(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._\-]{0,100}", v):
            raise ValueError("topic names allow only letters, digits, '.', '_' and '-'")
        return v

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy whose parsed URLs (cached per object) are parsed again from its own values: a copy with another
        `mysql_url` must not keep the original's DSN."""
        copy = super().model_copy(update=update, deep=deep)
        for name in _CACHED:
            copy.__dict__.pop(name, None)
        return copy

    @cached_property
    def mysql(self) -> MysqlDsn:
        return MysqlDsn.parse(self.mysql_url)

    @cached_property
    def relay_mysql(self) -> MysqlDsn:
        return MysqlDsn.parse(self.relay_mysql_url)

    @cached_property
    def mysql_admin(self) -> MysqlDsn:
        if self.mysql_admin_url is None:
            raise SettingsError(
                f"{ENV_PREFIX}MYSQL_ADMIN_URL is not set: migrations need a user with DDL and GRANT rights. "
                "Fix: export it (the dev stack writes it to .stack/tenderhub.env)."
            )
        return MysqlDsn.parse(self.mysql_admin_url)

    @cached_property
    def mysql_reader(self) -> MysqlDsn:
        if self.mysql_reader_url is None:
            raise SettingsError(
                f"{ENV_PREFIX}MYSQL_READER_URL is not set: verify and rebuild read every table, the outbox included, "
                "with a read-only user. Fix: export it (the dev stack writes it to .stack/tenderhub.env) and run "
                "`tenderhub migrate`, which creates the user."
            )
        return MysqlDsn.parse(self.mysql_reader_url)

    def today(self) -> dt.date:
        """The as-of date: the configured one, or today's date (UTC) on the real clock."""
        return self.as_of or dt.datetime.now(dt.UTC).date()


MYSQL_TLS_PARAMS = ("ssl_ca", "ssl_cert", "ssl_key", "ssl_verify_identity")
_MYSQL_URL_PARAMS = frozenset({*MYSQL_TLS_PARAMS, "charset"})


def mysql_tls_kwargs(query: str) -> dict[str, Any]:
    """PyMySQL's TLS arguments from a MySQL URL's query: `ssl_ca` (PEM file of the server's CA), `ssl_cert` and
    `ssl_key` (a client certificate), `ssl_verify_identity` (true/false: the certificate must name the host; default
    true). Any of them turns TLS on, always verifying the server's certificate. Raises ValueError for anything else."""
    params = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(params) - _MYSQL_URL_PARAMS)
    if unknown:
        raise ValueError(f"unknown MySQL URL parameter(s) {unknown}: TLS takes {', '.join(MYSQL_TLS_PARAMS)}")
    values = {name: params[name][-1] for name in MYSQL_TLS_PARAMS if name in params}
    if not values:
        return {}
    for name in ("ssl_ca", "ssl_cert", "ssl_key"):
        if name in values and not os.access(values[name], os.R_OK):
            raise ValueError(f"{name}={values[name]} is not a readable file")
    if ("ssl_cert" in values) != ("ssl_key" in values):
        raise ValueError("ssl_cert and ssl_key go together")
    identity = values.get("ssl_verify_identity", "true").lower()
    if identity not in ("true", "false", "1", "0"):
        raise ValueError(f"ssl_verify_identity must be true or false, got {identity!r}")
    return {
        "ssl_ca": values.get("ssl_ca"),
        "ssl_cert": values.get("ssl_cert"),
        "ssl_key": values.get("ssl_key"),
        "ssl_verify_cert": True,
        "ssl_verify_identity": identity in ("true", "1"),
    }


class MysqlDsn:
    """A parsed MySQL URL, ready for PyMySQL and python-mysql-replication (TLS from its query, see mysql_tls_kwargs)."""

    def __init__(
        self, host: str, port: int, user: str, password: str, database: str, tls: Mapping[str, Any] | None = None
    ) -> None:
        self.host, self.port, self.user, self.password, self.database = host, port, user, password, database
        self.tls = dict(tls or {})

    @classmethod
    def parse(cls, url: SecretStr) -> MysqlDsn:
        parts = urlsplit(url.get_secret_value())
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            database=parts.path.strip("/"),
            tls=mysql_tls_kwargs(parts.query),
        )

    def pymysql_kwargs(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "user": self.user, "password": self.password, **self.tls}

    def __repr__(self) -> str:
        return f"MysqlDsn({self.user}@{self.host}:{self.port}/{self.database})"


_FIXES = {
    "mysql_url": "export it, or run `tenderhub stack up`, which writes .stack/tenderhub.env",
    "relay_mysql_url": "export it, or run `tenderhub stack up`, which writes .stack/tenderhub.env",
    "kafka_bootstrap": "export it as host:port, e.g. 127.0.0.1:19092",
    "mongo_url": "export it, e.g. mongodb://127.0.0.1:37017/",
    "redis_url": "export it, e.g. redis://:password@127.0.0.1:16379/0",
}


def _explain(exc: ValidationError, model: type[BaseSettings]) -> SettingsError:
    lines = []
    for err in exc.errors():
        if not err["loc"]:  # a check across fields: its message names them
            lines.append(f"  {err['msg']}.")
            continue
        field = str(err["loc"][0])
        var = f"{ENV_PREFIX}{field.upper()}"
        doc = model.model_fields[field].description if field in model.model_fields else ""
        problem = "is not set" if err["type"] == "missing" else f"is invalid: {err['msg']}"
        fix = _FIXES.get(field, "set it to a valid value")
        lines.append(f"  {var} {problem} ({doc}) Fix: {fix}.")
    return SettingsError("invalid tenderhub settings:\n" + "\n".join(lines))


_SettingsT = TypeVar("_SettingsT", bound="_Base")


def _load(model: type[_SettingsT], overrides: dict[str, Any]) -> _SettingsT:
    env_file = _env_file()
    try:
        return model(_env_file=env_file, _secrets_dir=_secrets_dir(), **overrides)
    except ValidationError as exc:
        raise _explain(exc, model) from None
    except UnicodeDecodeError as exc:
        raise SettingsError(
            f"the env file {env_file} ({ENV_PREFIX}ENV_FILE) or a secret file is not UTF-8 text: {exc.reason} at byte "
            f"{exc.start}. Fix: save it as UTF-8."
        ) from None
    except PydanticSettingsError as exc:
        # A value that must be JSON (a map or a list) and is not. The message names the variable, never the value.
        field = re.search(r'field "(\w+)"', str(exc))
        var = f"{ENV_PREFIX}{field.group(1).upper()}" if field else "a setting that takes JSON"
        raise SettingsError(
            f"invalid tenderhub settings:\n  {var} is invalid: it must be JSON (for example "
            f'{ENV_PREFIX}TOPIC_MAP=\'{{"tender": "prod.tender"}}\'). Fix: correct the JSON or unset it.'
        ) from None


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the pipeline settings; raise SettingsError with a fix for each bad option."""
    return _load(Settings, overrides)


def load_stack_settings(**overrides: Any) -> StackSettings:
    return _load(StackSettings, overrides)


def describe_options() -> list[tuple[str, str, str, str]]:
    """(variable, type, default, doc) of every option, for `tenderhub settings` and the README."""
    rows = []
    seen: set[str] = set()
    for model in (Settings, StackSettings):
        for name, field in model.model_fields.items():
            if name in seen:
                continue
            seen.add(name)
            default = "(required)" if field.is_required() else repr(field.default)
            rows.append((f"{ENV_PREFIX}{name.upper()}", str(field.annotation), default, field.description or ""))
    return rows
