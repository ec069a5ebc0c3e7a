"""`tenderhub` command line: the dev stack, migrations, the smoke run and the main demo job."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

from schema.settings import (
    DEFAULT_ENV_FILE,
    Settings,
    SettingsError,
    StackSettings,
    describe_options,
    load_settings,
    load_stack_settings,
    mixed_sources,
)

log = logging.getLogger("tenderhub")


def _say(message: str) -> None:
    print(message, flush=True)


def cmd_stack(args: argparse.Namespace) -> int:
    from tenderhub.stack import Stack

    cfg = load_stack_settings()
    recorded = Stack.recorded_layout(cfg.stack_dir.resolve())
    if getattr(args, "cluster", False):
        cfg = cfg.model_copy(update={"kafka_brokers": 3, "redis_nodes": 6})
    elif recorded:
        cfg = cfg.model_copy(update=recorded)
    stack = Stack(cfg)
    if args.action == "up":
        start = time.monotonic()
        stack.up(progress=_say)
        _say(f"stack up in {time.monotonic() - start:.1f} s")
        return 0
    if args.action == "down":
        stack.down(purge=args.purge, progress=_say)
        return 0
    rows = stack.status()
    _say(f"{'service':<10} {'port':>6} {'pid':>8} {'rss MB':>8}  health")
    for r in rows:
        rss = f"{r.rss_mb:.0f}" if r.rss_mb is not None else "-"
        _say(f"{r.name:<10} {r.port:>6} {r.pid or '-':>8} {rss:>8}  {r.health}")
    total = sum(r.rss_mb or 0 for r in rows)
    _say(f"total RSS {total:.0f} MB")
    return 0 if all(r.health == "healthy" for r in rows) else 1


def run_migrate(settings: Settings) -> None:
    from pymongo import MongoClient

    from schema.mongo import ensure_collections
    from schema.mysql import migrate
    from schema.topics import ensure_topics, topic_specs
    from streams.agents import collections, registry

    applied = migrate(settings)
    _say(
        f"mysql: {len(applied)} migration(s) applied{': ' + ', '.join(applied) if applied else ''}; "
        f"users {settings.mysql.user}, {settings.relay_mysql.user} ({settings.relay_mode} mode)"
        f"{', ' + settings.mysql_reader.user if settings.mysql_reader_url else ''} granted"
    )
    client: MongoClient[dict[str, object]] = MongoClient(
        settings.mongo_url.get_secret_value(), serverSelectionTimeoutMS=10_000
    )
    try:
        created = ensure_collections(client[settings.mongo_db], settings, collections(registry().values()))
    finally:
        client.close()
    _say(f"mongodb: collections ready ({', '.join(created) or 'none'} created now)")
    topics = asyncio.run(ensure_topics(settings, topic_specs(settings)))
    _say(f"kafka: topics ready ({', '.join(topics) or 'none'} created now)")


def cmd_migrate(_: argparse.Namespace) -> int:
    run_migrate(load_settings())
    return 0


def cmd_smoke(_: argparse.Namespace) -> int:
    from tenderhub.smoke import run_all

    _say("smoke run through every service:")
    run_all(load_settings(), progress=_say)
    return 0


def _wait_for_ctrl_c() -> None:
    """Until Ctrl-C (SIGINT) or SIGTERM; handled here, whatever the shell left SIGINT as (a background job's is
    ignored), so that the demo always stops its processes on the way out."""
    stop = threading.Event()
    received: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop.wait()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    _say(f"\n{signal.Signals(received[0]).name}: stopping the worker, the relay and the read service")


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: stack up, migrate, smoke, then the whole pipeline on real data (relay + worker)."""
    import datetime as dt

    from tenderhub.demo import DEMO_AS_OF, DemoError, demo_namespace, pipeline_demo, reset_namespace

    if not 1 <= args.tenders <= 200:
        raise SettingsError(f"--tenders must be between 1 and 200 (the shipped slice), got {args.tenders}")
    start = time.monotonic()
    _say("[1/4] stack up")
    cmd_stack(argparse.Namespace(action="up"))
    _say("[2/4] migrate")
    settings = load_settings()
    run_migrate(settings)
    _say("[3/4] smoke")
    cmd_smoke(args)
    if settings.as_of is None:
        settings = settings.model_copy(update={"as_of": dt.date.fromisoformat(DEMO_AS_OF)})
    _say(
        f"[4/4] pipeline on real data: {args.tenders} eTenders tenders + UK award values + company profiles -> "
        "outbox -> relay -> Kafka -> worker -> MongoDB / Redis"
    )
    settings = demo_namespace(settings, time.strftime("%Y%m%d%H%M%S"))
    try:
        reset_namespace(settings, _say)
        pipeline_demo(
            settings,
            load_stack_settings().stack_dir,
            _say,
            za_tenders=args.tenders,
            relay_args=("--from-now",),
            hold=None if args.no_wait or not sys.stdin.isatty() else _wait_for_ctrl_c,
        )
    except DemoError as exc:
        print(f"tenderhub demo: {exc}", file=sys.stderr)
        return 1
    cmd_stack(argparse.Namespace(action="status"))
    _say(f"demo finished in {time.monotonic() - start:.1f} s; stop the stack with `tenderhub stack down`")
    return 0


def cmd_cdc(args: argparse.Namespace) -> int:
    from cdc.cli import run_relay
    from cdc.modes import StartOptions

    if args.from_now and args.resnapshot:
        raise SettingsError("--from-now and --resnapshot exclude each other")
    return asyncio.run(run_relay(load_settings(), StartOptions(from_now=args.from_now, resnapshot=args.resnapshot)))


def cmd_doctor(_: argparse.Namespace) -> int:
    from cdc.doctor import exit_code, render, run_checks

    checks = run_checks(load_settings())
    _say(render(checks))
    return exit_code(checks)


def cmd_kafka_acls(args: argparse.Namespace) -> int:
    from tenderhub.kafka_acls import apply_acls, kafka_acls_arguments, pipeline_acls

    settings = load_settings()
    acls = pipeline_acls(settings, args.relay_user, args.worker_user)
    if args.print:
        print("# add --command-config <file>: the admin user's client settings (security.protocol, sasl.*, ssl.*)")
        for acl in acls:
            words = ["kafka-acls.sh", "--bootstrap-server", settings.kafka_bootstrap, *kafka_acls_arguments(acl)]
            print(" ".join(shlex.quote(w) for w in words))  # meant to be pasted into a shell
        return 0
    added = asyncio.run(apply_acls(settings, acls))
    _say(f"kafka: {added} ACL bindings for {args.relay_user} (relay) and {args.worker_user} (workers)")
    return 0


def _sasl_user(text: str) -> str:
    """A SASL user name, or a certificate's distinguished name (`CN=relay,OU=...`): printable, with no quote,
    backslash, backquote or dollar (the printed commands also quote each word for the shell)."""
    if not text or len(text) > 255 or not text.isprintable() or any(c in text for c in "\"'\\`$"):
        raise argparse.ArgumentTypeError(f"expected a SASL user name or a certificate DN, got {text[:40]!r}")
    return text


def cmd_worker(args: argparse.Namespace) -> int:
    from sinks.errors import StoreAccessError
    from streams.batch import EXIT_STORE_REFUSED
    from streams.worker import run_worker
    from tenderhub import dashboard

    settings = load_settings()
    agents = worker_agents(args.agents, settings)
    try:
        return run_worker(
            settings,
            agents=agents,
            loglevel="DEBUG" if args.verbose else "INFO",
            extend=lambda pipeline: dashboard.install(settings, pipeline),
        )
    except StoreAccessError as exc:
        print(f"tenderhub: {exc}", file=sys.stderr)
        return EXIT_STORE_REFUSED


def worker_agents(text: str | None, settings: Settings) -> list[str] | None:
    """`--agents` as names of registered agents, and the settings only agents read, checked before the worker
    contacts any store (SettingsError: exit 2, as the worker's help says)."""
    from streams.agents import registry
    from streams.readiness.scoring import WeightsError, weights_with

    known = sorted(registry())
    names = [n.strip() for n in text.split(",")] if text else None  # none given: every agent
    if names is not None:
        unknown = sorted({n for n in names if n not in known})
        if unknown or not names:
            raise SettingsError(f"--agents: unknown agents {unknown}; known: {', '.join(known)} (comma-separated)")
    if names is None or "readiness" in names:
        try:
            weights_with(settings.readiness_weights)
        except WeightsError as exc:
            raise SettingsError(f"TENDERHUB_READINESS_WEIGHTS: {exc}") from None
    return names


def cmd_replay(args: argparse.Namespace) -> int:
    from streams.replay import ReplayError, Target, replay

    settings = load_settings()
    if args.rebuild and not args.yes:
        if not sys.stdin.isatty():
            raise SettingsError("--rebuild deletes the derived MongoDB collections and Redis keys: add --yes")
        answer = input(
            f"delete the derived stores of {settings.mongo_db} / redis prefix {settings.redis_key_prefix!r}? "
        )
        if answer.strip().lower() not in ("y", "yes"):
            _say("nothing done")
            return 1
    try:
        asyncio.run(replay(settings, Target.parse(args.to), rebuild=args.rebuild, forward=args.forward, say=_say))
    except ReplayError as exc:
        print(f"tenderhub replay: {exc}", file=sys.stderr)
        return 2
    _say("start the workers again (`tenderhub worker`): they resume from the rewound offsets")
    return 0


def _families(args: argparse.Namespace) -> list[str]:
    from streams.verify import FAMILIES

    chosen = [f for group in args.family or [] for f in group.split(",") if f] or list(FAMILIES)
    unknown = sorted(set(chosen) - set(FAMILIES))
    if unknown:
        raise SettingsError(f"--family: unknown {unknown}; choose from {', '.join(FAMILIES)}")
    return chosen


def cmd_verify(args: argparse.Namespace) -> int:
    from streams.verify import VerifyError, verify

    if args.examples < 0:
        raise SettingsError("--examples must be >= 0")
    try:
        report = asyncio.run(verify(load_settings(), _families(args), args.examples))
    except VerifyError as exc:
        print(f"tenderhub verify: {exc}", file=sys.stderr)
        return 2
    if args.json:
        _say(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        for line in report.lines():
            _say(line)
    return 0 if report.drift == 0 else 1


def cmd_rebuild(args: argparse.Namespace) -> int:
    from streams.rebuild import rebuild
    from streams.replay import ReplayError
    from streams.verify import VerifyError

    settings = load_settings()
    families = _families(args)
    if not args.yes:
        if not sys.stdin.isatty():
            raise SettingsError("rebuild rewrites the derived MongoDB documents and Redis keys from MySQL: add --yes")
        answer = input(f"rebuild {', '.join(families)} of {settings.mongo_db} / {settings.redis_key_prefix!r}? ")
        if answer.strip().lower() not in ("y", "yes"):
            _say("nothing done")
            return 1
    try:
        report = asyncio.run(rebuild(settings, families, say=_say))
    except (VerifyError, ReplayError) as exc:
        print(f"tenderhub rebuild: {exc}", file=sys.stderr)
        return 2
    _say(f"rebuilt from MySQL in {report.seconds:.1f} s (version {report.version}); check with `tenderhub verify`")
    return 0


def cmd_corpus(args: argparse.Namespace) -> int:
    from tenderhub.corpus.report import summary, table, write_report
    from tenderhub.corpus.runner import run_corpus

    result = run_corpus(load_settings(), load_stack_settings().stack_dir, _say, keep=args.keep)
    for line in [*table(result), "", *summary(result)]:
        _say(line)
    _say(f"report: {write_report(result, Path(args.report_dir))}")
    return 0 if result.passed else 1


def cmd_faults(args: argparse.Namespace) -> int:
    from tenderhub.faults.report import write_report
    from tenderhub.faults.runner import FaultRunError, Options, run_faults

    soak = args.soak_minutes is not None
    minutes = args.soak_minutes if soak else args.minutes
    events = args.events if args.events is not None else (int(args.rate * minutes * 60) if soak else 100_000)
    faults = args.faults if args.faults is not None else (0 if soak else 50)
    if soak and minutes < 20:
        _say(f"note: a soak shorter than 20 minutes ({minutes:g}) is a rehearsal, not the soak of record")
    options = Options(
        events=events,
        faults=faults,
        load_s=minutes * 60,
        max_outage_s=args.max_outage_s,
        seed=args.seed,
        soak=soak,
        sample_s=args.sample_s,
        settle_s=args.settle_s,
        keep=args.keep,
    )

    def stop_once(signum: int, frame: object) -> None:
        # One stop only: a second signal must not cut short the clean-up (a frozen Redis, a stopped FerretDB or
        # orphaned relays and workers would be left behind). SIGKILL still abandons it.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print(
            "tenderhub faults: stopping - bringing back any service it took down, stopping its relays and workers",
            file=sys.stderr,
        )
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGTERM unwinds like Ctrl-C.
    signal.signal(signal.SIGTERM, stop_once)
    signal.signal(signal.SIGINT, stop_once)
    try:
        result = run_faults(load_settings(), options, _say, load_stack_settings().stack_dir)
    except FaultRunError as exc:
        print(f"tenderhub faults: {exc}", file=sys.stderr)
        return 2
    for what, figure, ok in result.checks():
        _say(f"{'ok  ' if ok else 'FAIL'} {what}: {figure}")
    _say(f"report: {write_report(result, Path(args.report_dir))}")
    return 0 if result.passed else 1


def cmd_status(args: argparse.Namespace) -> int:
    from tenderhub.status import gather_status, render_json

    status = asyncio.run(gather_status(load_settings()))
    _say(render_json(status) if args.json else status.render())
    return 0 if status.healthy else 1


def cmd_dlq(args: argparse.Namespace) -> int:
    from schema.topics import TopicNames
    from tenderhub.dlq import DlqError, DlqReader, plan_replay, replay

    if args.action == "list" and args.offsets:
        print("tenderhub dlq: list takes no offsets (show OFFSET... shows letters)", file=sys.stderr)
        return 2
    if args.action != "list" and not args.offsets and not args.all:
        print(f"tenderhub dlq: {args.action} needs the offsets of the letters, or --all", file=sys.stderr)
        return 2
    if args.limit < 1:
        print("tenderhub dlq: --limit must be at least 1", file=sys.stderr)
        return 2
    settings = load_settings()
    topics = TopicNames.from_settings(settings)

    async def run() -> int:
        async with DlqReader(settings, topics.dlq) as reader:
            if args.action == "list":
                begin, end = await reader.bounds()
                letters = await reader.read(last=None if args.all else args.limit)
                if args.json:
                    _say(
                        json.dumps(
                            {"first_offset": begin, "end_offset": end, "letters": [x.summary() for x in letters]}
                        )
                    )
                    return 0
                _say(f"DLQ {topics.dlq}: offsets {begin} to {end - 1}, showing {len(letters)}")
                for x in letters:
                    who = x.stage + (f"/{x.agent}" if x.agent else "")
                    _say(f"@{x.offset}  {x.at}  {who:<24} event {x.event_id}  {x.reason[:120]}")
                return 0
            letters = await reader.read(offsets=args.offsets) if args.offsets else await reader.read()
        if args.action == "show":
            for x in letters:
                _say(json.dumps({**x.summary(), "letter": x.body}, indent=None if args.json else 2, ensure_ascii=False))
            return 0
        plans = [plan_replay(x, topics) for x in letters]
        sent = 0 if args.dry_run else await replay(settings, plans)
        for p in plans:
            verb = "would send" if args.dry_run else "sent"
            line = f"@{p.letter.offset}: {verb} to {p.topic}" if p.refused is None else f"@{p.letter.offset}: NOT "
            _say(line + (f"replayable: {p.refused}" if p.refused is not None else ""))
        refused = sum(p.refused is not None for p in plans)
        _say(f"{'dry run: ' if args.dry_run else ''}{sent} replayed, {refused} not replayable")
        return 0 if refused == 0 else 1

    try:
        return asyncio.run(run())
    except DlqError as exc:
        print(f"tenderhub dlq: {exc}", file=sys.stderr)
        return 2


def cmd_api(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.action == "serve":
        from tenderhub.api import serve

        serve(settings)
        return 0
    from cdc.outbox import make_engine
    from tenderhub.api.tokens import TokenError, issue, list_tokens, revoke

    engine = make_engine(settings)
    try:
        if args.action == "issue":
            if args.user is None or args.team is None:
                print("tenderhub api token issue: --user and --team are needed", file=sys.stderr)
                return 2
            token_id, token = issue(engine, args.user, args.team, args.name)
            _say(f"token {token_id} for user {args.user} of team {args.team} ({args.name}); shown once, keep it:")
            _say(token)
        elif args.action == "revoke":
            if args.id is None:
                print("tenderhub api token revoke: the token's id is needed", file=sys.stderr)
                return 2
            if not revoke(engine, args.id):
                print(f"tenderhub api: no active token {args.id}", file=sys.stderr)
                return 1
            _say(f"token {args.id} revoked (the read service stops taking it within {settings.api_token_cache_s:g} s)")
        else:
            _say(json.dumps(list_tokens(engine, args.team), indent=2))
        return 0
    except TokenError as exc:
        print(f"tenderhub api: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()


def _offset(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a DLQ offset (a non-negative integer)")
    return int(text)


def _id(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 19 or text.startswith("0") or int(text) >= 2**63:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an id (a positive integer of at most 2^63-1)")
    return int(text)


def cmd_settings(_: argparse.Namespace) -> int:
    for var, typ, default, doc in describe_options():
        _say(f"{var}\n    {doc}\n    type {typ}, default {default}")
    return 0


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers in production (TENDERHUB_LOG_JSON=true)."""

    @staticmethod
    def converter(secs: float | None = None) -> time.struct_time:
        return time.gmtime(secs)

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(cfg: StackSettings, verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if cfg.log_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level="DEBUG" if verbose else cfg.log_level, handlers=[handler], force=True)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # The replication library logs its whole configuration at INFO on every (re)connect.
    logging.getLogger("pymysqlreplication").setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tenderhub",
        description=__doc__,
        epilog="exit status of every command, besides its own: 2 bad settings or arguments; 69 MySQL, Kafka, MongoDB "
        "or Redis cannot answer (one line names it and its setting); 130 interrupted",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    stack = sub.add_parser("stack", help="the local services: up | down | status")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("--purge", action="store_true", help="with down: also delete the stack's data folder")
    stack.add_argument(
        "--cluster",
        action="store_true",
        help="with up: three Kafka brokers (replication factor 3, min.insync.replicas 2) instead of one, and a Redis "
        "Cluster of three masters and three replicas instead of one Redis",
    )
    stack.set_defaults(func=cmd_stack)
    sub.add_parser("migrate", help="apply MySQL migrations, users, MongoDB collections, Kafka topics").set_defaults(
        func=cmd_migrate
    )
    cdc = sub.add_parser("cdc", help="the CDC relay: binlog -> Kafka")
    cdc.add_argument("action", choices=["run"])
    cdc.add_argument(
        "--from-now", action="store_true", help="first start: skip the backfill, start at the current binlog position"
    )
    cdc.add_argument(
        "--resnapshot",
        action="store_true",
        help="ignore the committed position: republish unpublished rows from a consistent snapshot",
    )
    cdc.set_defaults(func=cmd_cdc)
    sub.add_parser(
        "doctor", help="check the MySQL source as the relay sees it, with a fix for each problem"
    ).set_defaults(func=cmd_doctor)
    sub.add_parser("smoke", help="check every service as the pipeline uses it").set_defaults(func=cmd_smoke)
    demo = sub.add_parser("demo", help="the main job: stack, relay and worker on real data; top 5s, summaries, spend")
    demo.add_argument("--tenders", type=int, default=60, help="how many real eTenders tenders to load (max 200)")
    demo.add_argument(
        "--no-wait",
        action="store_true",
        help="exit when done (default in a terminal: keep the dashboard and read service up until Ctrl-C; without "
        "a terminal, as in CI, it never waits)",
    )
    demo.set_defaults(func=cmd_demo)
    worker = sub.add_parser(
        "worker",
        help="the stream worker: Faust agents -> MongoDB / Redis (web view on)",
        epilog="exit status: 0 stopped cleanly; 2 bad settings or a summarisation model that cannot load; 75 stopped "
        "while a store was still down; 78 a store refused the worker's credentials or permissions (nothing "
        "acknowledged; fix the URL or grants named in the message, then start again)",
    )
    worker.add_argument("--agents", default="", help="comma-separated agent names (default: all)")
    acls = sub.add_parser(
        "kafka-acls",
        help="allow the relay's and the workers' Kafka users exactly what they need (run with an admin user)",
    )
    acls.add_argument("--relay-user", default="relay", type=_sasl_user, help="the relay's SASL user")
    acls.add_argument("--worker-user", default="worker", type=_sasl_user, help="the workers' SASL user")
    acls.add_argument("--print", action="store_true", help="print kafka-acls.sh commands instead of applying")
    acls.set_defaults(func=cmd_kafka_acls)
    worker.set_defaults(func=cmd_worker)
    replay = sub.add_parser("replay", help="rewind the workers' consumer group; with --rebuild, recompute everything")
    replay.add_argument(
        "--to", default="earliest", help="'earliest' (default), 'offset:N', or an ISO time (first event at/after it)"
    )
    replay.add_argument("--rebuild", action="store_true", help="clear the derived stores first (needs --to earliest)")
    replay.add_argument("--yes", action="store_true", help="do not ask before deleting (scripts, CI)")
    replay.add_argument(
        "--forward",
        action="store_true",
        help="allow moving the group past events its workers have not handled (they are skipped; refused without it)",
    )
    replay.set_defaults(func=cmd_replay)
    verify = sub.add_parser(
        "verify",
        help="recompute every derived family from MySQL and compare with MongoDB / Redis; report drift",
        epilog="exit status: 0 no drift; 1 drift (examples printed); 2 usage or configuration error",
    )
    verify.add_argument(
        "--family",
        action="append",
        help="summaries, readiness, top_lists, spend, cards, activity (repeat or comma-separate; default all)",
    )
    verify.add_argument("--json", action="store_true", help="one JSON object on stdout")
    verify.add_argument("--examples", type=int, default=5, help="drift examples shown per family")
    verify.set_defaults(func=cmd_verify)
    rebuild = sub.add_parser(
        "rebuild",
        help="recompute the derived stores from MySQL (no Kafka history needed) through the version-guarded sinks",
    )
    rebuild.add_argument("--family", action="append", help="as for verify (default all)")
    rebuild.add_argument("--yes", action="store_true", help="do not ask first (scripts, CI)")
    rebuild.set_defaults(func=cmd_rebuild)
    corpus = sub.add_parser(
        "corpus",
        help="send the bad-input corpus through the outbox and straight onto the data topics; check where it went",
        epilog="exit status: 0 pass (0 crashes, 0 stalls, 0 harmful writes, every case where it should go); 1 fail",
    )
    corpus.add_argument("--report-dir", default="bench/reports", help="folder of the markdown report")
    corpus.add_argument("--keep", action="store_true", help="keep the run's topics, database and keys to look at")
    corpus.set_defaults(func=cmd_corpus)
    faults = sub.add_parser(
        "faults",
        help="the whole pipeline under load and random faults (or --soak-minutes: steady load), then an audit",
        epilog="exit status: 0 pass (every check zero: nothing missing, duplicated, unpublished, extra or drifted); "
        "1 fail; 2 the run could not start. Restarts the stack's Kafka, MariaDB, FerretDB and Redis: not for a "
        "stack others are using.",
    )
    faults.add_argument("--events", type=int, help="outbox events to write (default 100000; soak: rate x minutes)")
    faults.add_argument("--faults", type=int, help="random faults during the load (default 50; soak: 0)")
    faults.add_argument("--minutes", type=float, default=15.0, help="length of the load window (default 15)")
    faults.add_argument("--max-outage-s", type=float, default=30.0, help="longest FerretDB/Redis outage (<= 30)")
    faults.add_argument("--seed", type=int, help="seed of the load and the fault schedule (default: random)")
    faults.add_argument("--soak-minutes", type=float, help="soak mode: steady load this long (>= 20 for the record)")
    faults.add_argument("--rate", type=float, default=50.0, help="soak: events per second (default 50)")
    faults.add_argument("--sample-s", type=float, default=60.0, help="seconds between RSS/backlog samples")
    faults.add_argument("--settle-s", type=float, default=900.0, help="longest wait for quiescence after the load")
    faults.add_argument("--report-dir", default="bench/reports", help="folder of the markdown report")
    faults.add_argument("--keep", action="store_true", help="keep the run's database, topics and keys to look at")
    faults.set_defaults(func=cmd_faults)
    status = sub.add_parser(
        "status",
        help="relay position and lag, consumer lag, DLQ count, store health (exit 1 when a part is down)",
    )
    status.add_argument("--json", action="store_true", help="one JSON object instead of text")
    status.set_defaults(func=cmd_status)
    dlq = sub.add_parser(
        "dlq",
        help="dead letters: list | show OFFSET... | replay OFFSET... (or --all) back to their data topics",
        epilog="replay sends a worker's letter's event to the topic it came from, and a relay's letter's row, checked "
        "again against the contract, as the relay would have published it; agents are version-guarded, so a "
        "replayed event never overwrites what a newer one produced. Exit status 1 when a chosen letter cannot be "
        "replayed, 2 for an offset with no letter.",
    )
    dlq.add_argument("action", choices=["list", "show", "replay"])
    dlq.add_argument("offsets", nargs="*", type=_offset, help="offsets of letters (show, replay)")
    dlq.add_argument("--limit", type=int, default=20, help="list: the latest this many (default 20)")
    dlq.add_argument("--all", action="store_true", help="list or replay every letter kept")
    dlq.add_argument("--dry-run", action="store_true", help="replay: say what would be sent, send nothing")
    dlq.add_argument("--json", action="store_true", help="JSON output")
    dlq.set_defaults(func=cmd_dlq)
    api = sub.add_parser("api", help="the read service: serve | token issue | revoke | list")
    api_sub = api.add_subparsers(dest="api_command", required=True)
    api_sub.add_parser("serve", help="serve the read API (TENDERHUB_API_HOST:TENDERHUB_API_PORT)").set_defaults(
        func=cmd_api, action="serve"
    )
    token = api_sub.add_parser("token", help="bearer tokens: issue --user --team | revoke ID | list [--team]")
    token.add_argument("action", choices=["issue", "revoke", "list"])
    token.add_argument("id", nargs="?", type=_id, help="revoke: the token's id")
    token.add_argument("--user", type=_id, help="issue: the user the token speaks for")
    token.add_argument("--team", type=_id, help="issue: the user's team; list: only this team's tokens")
    token.add_argument("--name", default="api", help="issue: a name to recognise the token by")
    token.set_defaults(func=cmd_api)
    sub.add_parser("settings", help="list every setting with its doc and default").set_defaults(func=cmd_settings)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from cdc.errors import CdcError
    from streams.summaries.base import SummariserError
    from tenderhub.stack import StackError

    try:
        setup_logging(load_stack_settings(), args.verbose)
        filled = mixed_sources()
        if filled:
            logging.getLogger("tenderhub").warning(
                "store URLs come from the environment, but %s come from %s, the dev stack's file (read because "
                "TENDERHUB_ENV_FILE is not set): set TENDERHUB_ENV_FILE to the file meant, or /dev/null for none",
                ", ".join(filled[:8]) + (" ..." if len(filled) > 8 else ""),
                DEFAULT_ENV_FILE,
            )
        return int(args.func(args))
    except (SettingsError, StackError, CdcError, SummariserError) as exc:
        print(f"tenderhub: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tenderhub: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of the output went away (`tenderhub settings | head`): no traceback, and the status a shell
        # gives a command whose pipe ended (128 + SIGPIPE), not 0, which would hide a failure such as drift.
        sys.stderr.close()
        return 141
    except Exception as exc:
        service = unreachable_service(exc)
        if service is None:
            raise
        name, variables = service
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        print(
            f"tenderhub: {name} cannot answer ({type(exc).__name__}: {first}). Fix: start it, or correct {variables}.",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE


EXIT_UNREACHABLE = 69  # sysexits' EX_UNAVAILABLE: a service the command needs cannot be reached


def unreachable_service(exc: BaseException) -> tuple[str, str] | None:
    """(service, its settings) when `exc`, or what it was raised from, means a store or the broker cannot be
    reached or answered too late; None for anything else (a bug keeps its traceback)."""
    import aiokafka.errors
    import pymongo.errors
    import pymysql
    import redis.exceptions
    import sqlalchemy.exc

    seen: set[int] = set()
    cause: BaseException | None = exc
    # Only what the error was raised from (`raise ... from`): an error raised while handling another is its own.
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, sqlalchemy.exc.TimeoutError):  # the pool found no connection in time
            return "MySQL", "the TENDERHUB_MYSQL*_URL the command uses"
        orig = cause.orig if isinstance(cause, sqlalchemy.exc.DBAPIError) else cause
        # Client-side errors only (2002 no socket, 2003 refused, 2006 gone, 2013 lost, ...): the server's own
        # refusals (access denied, a missing grant, a deadlock) are not an outage and keep their traceback.
        code = orig.args[0] if isinstance(orig, pymysql.err.OperationalError) and orig.args else None
        if isinstance(code, int) and 2000 <= code < 2100:
            return "MySQL", "the TENDERHUB_MYSQL*_URL the command uses"
        if isinstance(cause, aiokafka.errors.KafkaConnectionError | aiokafka.errors.KafkaTimeoutError):
            return "Kafka", "TENDERHUB_KAFKA_BOOTSTRAP"
        if isinstance(cause, pymongo.errors.ConnectionFailure):
            return "MongoDB", "TENDERHUB_MONGO_URL"
        redis_down = isinstance(cause, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError)
        if redis_down and not isinstance(cause, redis.exceptions.AuthenticationError):
            return "Redis", "TENDERHUB_REDIS_URL"
        cause = cause.__cause__
    return None


if __name__ == "__main__":
    sys.exit(main())
