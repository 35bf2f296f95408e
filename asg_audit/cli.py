"""The command line: parse arguments, build the config, call one library function, map errors.

Every command that touches the store takes `--db PATH` and `--config FILE`. Exit codes
(DESIGN.md): 0 ok, 1 findings at or above `--fail-on`, 2 usage or config error, 3 incomplete run.
An `AuditError` prints one clear line; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO, TypeVar, cast

from asg_audit.audit_outcome import outcome_error, outcome_json
from asg_audit.config import AuditConfig, load_config
from asg_audit.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_FINDINGS,
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_USAGE,
    AuditError,
    ConfigError,
)
from asg_audit.guarded_output import STDERR as _STDERR
from asg_audit.guarded_output import STDOUT as _STDOUT
from asg_audit.guarded_output import GuardedStream, open_missing_std_fds
from asg_audit.model import printable

__all__ = ["main"]

Handler = Callable[[argparse.Namespace, AuditConfig], int]
T = TypeVar("T")


def _recorded(command: str, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Return `work(*args, **kwargs)`, a library call that records the command's run as it
    ended; from that record on, a stop signal (SIGINT, SIGTERM) is left alone.

    What a command does after its run is recorded (closing its store, the summary, the findings
    it reads from the store, the exit code they give) is output about a run `asg-audit runs`
    already shows as ended: a signal then is one that arrives once the command has finished,
    which leaves its exit code as it was, and its output whole (a signal there once made
    `billing` exit 3 "interrupted" with its findings unprinted, its run recorded `ok`). The
    store says when the run's end is recorded (`stopsignals.run_ended`); the first stop signal
    acts only before (`stopsignals.note_stop`: later ones are left alone).
    """
    from asg_audit.stopsignals import note_stop, one_run_command

    one_run_command(command)  # the run `command` records in `runs`
    try:
        result = work(*args, **kwargs)
    finally:
        one_run_command(None)
    note_stop()
    return result


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        metavar="PATH",
        help="DuckDB store (default: env ASG_AUDIT_DB, else the config's db, else"
        " ./asg_audit.duckdb)",
    )
    p.add_argument(
        "--config", metavar="FILE", help="TOML config (default ./asg_audit.toml if present)"
    )


def _config(args: argparse.Namespace, **overrides: Any) -> AuditConfig:
    return load_config(
        getattr(args, "config", None),
        overrides={"db_path": getattr(args, "db", None), **overrides},
    )


# -- ingest, track, db info, demo ---------------------------------------------------------------


def _cmd_ingest(args: argparse.Namespace, config: AuditConfig) -> int:
    from asg_audit.ingest_files import ingest_paths, print_ingest_summary

    try:
        summary = _recorded(
            "ingest", ingest_paths, config.db_path, args.paths, progress=not args.quiet
        )
    except KeyboardInterrupt:
        print(
            "asg-audit: ingest interrupted: the files stored before it are kept, the file being"
            " read and those after it are not; run the same command again to finish (stored"
            " files are skipped)",
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    print_ingest_summary(summary)
    return EXIT_USAGE if summary.failed_files else 0


def _cmd_track(args: argparse.Namespace, config: AuditConfig) -> int:
    from asg_audit.track import print_track_summary, track_file

    summary = _recorded("track", track_file, config.db_path, args.file)
    print_track_summary(summary)
    return 0


def _cmd_db_info(args: argparse.Namespace, config: AuditConfig) -> int:
    from asg_audit.storeinfo import describe_store

    print(printable(describe_store(config.db_path)))  # the path is the user's: escaped
    return 0


def _cmd_demo(args: argparse.Namespace, config: AuditConfig) -> int:
    from asg_audit.demo import run_demo

    if args.db is not None:
        # The demo deletes and recreates its store: never a file named for another purpose.
        raise ConfigError(
            "demo takes no --db: it always works on a fresh store of its own,"
            f" {os.path.join(args.out, 'demo.duckdb')} (choose the folder with --out)"
        )
    return run_demo(
        config,
        out_dir=args.out,
        tasks=args.tasks,
        seed=args.seed,
        time_scale=args.time_scale,
        faults=args.faults,
    )


# -- simulate, webhooks, chain, billing, report, collect, runs, audit --------------------------


def _cmd_simulate(args: argparse.Namespace, config: AuditConfig) -> int:
    from asg_audit.sim.server import ListenError, serve_simulator

    try:
        return serve_simulator(
            seed=args.seed,
            tasks=args.tasks,
            time_scale=args.time_scale,
            faults=args.faults,
            port=args.port,
            out_dir=args.out,
            anomalies=args.anomalies,
            host=args.host,
        )
    except ListenError as exc:
        raise ConfigError(str(exc)) from None


def _webhook_secrets(args: argparse.Namespace, config: AuditConfig) -> tuple[Any, ...]:
    from asg_audit.config import read_secret_file

    secret_file = getattr(args, "secret_file", None) or config.webhooks.get("secret_file")
    secrets = tuple(config.webhook_secrets)
    if secret_file:
        secrets += read_secret_file(secret_file)
    if not secrets:
        raise ConfigError(
            "no webhook secret: set ASG_WEBHOOK_SECRET (comma-separated for"
            " rotation) or pass --secret-file FILE"
        )
    return secrets


def _cmd_serve_webhooks(args: argparse.Namespace, config: AuditConfig) -> int:
    from asg_audit.webhooks import WebhookSettings, serve_webhooks

    settings = WebhookSettings.from_mapping(config.webhooks)
    secrets = _webhook_secrets(args, config)
    # another writer holding the store is "database busy", exit 3, before anything listens
    serve_webhooks(
        config.db_path,
        secrets,
        host=args.host,
        port=args.port,
        settings=settings,
        # masked, as the webhook secrets are, in a stored body that quotes them
        other_secrets=(config.api_key, config.woc_api_key),
    )
    return 0


def _cmd_webhooks_register(args: argparse.Namespace, config: AuditConfig) -> int:
    from asg_audit.webhooks import register_webhook

    if config.api_key is None:
        raise ConfigError("no API key: set ASG_API_KEY (or API_KEY)")
    secrets = _webhook_secrets(args, config)
    answer = register_webhook(
        config.base_url,
        config.api_key,
        args.url,
        secrets[0],
        events=args.events,
        mask=(*config.all_secrets(), *secrets),
    )
    for key in ("webhook_id", "callback_url", "events", "active"):
        if key in answer:
            print(f"{key}: {printable(answer[key], one_line=True)}")  # the Gateway's words
    return 0


def _cmd_verify_chain(args: argparse.Namespace, config: AuditConfig) -> int:
    from asg_audit.chain import (
        print_findings,
        reconciliation_findings,
        report_exit_code,
        verify_chain,
    )

    _check_flag("--rps", "chain", "rps", args.rps)
    if args.rps is not None:
        config = config.replace(chain={**config.chain, "rps": args.rps})
    summary = _recorded(
        "verify-chain",
        verify_chain,
        config.db_path,
        config,
        progress=not args.quiet,
        recheck_unknown=args.recheck_unknown,
    )
    for line in summary.lines():
        print(line)
    findings, coverage = reconciliation_findings(config.db_path, config, prefixes=("chain.",))
    print_findings(findings, coverage)
    if summary.refused:
        return EXIT_INCOMPLETE  # an index answer failed its integrity check: asked again next run
    return report_exit_code(findings, args.fail_on or config.fail_on)


def _cmd_billing(args: argparse.Namespace, config: AuditConfig) -> int:
    from asg_audit.billing import MONTH_RE, fetch_billing
    from asg_audit.chain import print_findings, reconciliation_findings, report_exit_code

    for month in args.month or ():
        # the rule fetch_billing applies, named by the flag (not by the function)
        if not MONTH_RE.match(month):
            raise ConfigError(f"--month must be YYYY-MM (month 01 to 12), got {month!r}")
    summary = _recorded("billing", fetch_billing, config.db_path, config, months=args.month or None)
    for line in summary.lines():
        print(line)
    findings, _ = reconciliation_findings(config.db_path, config, prefixes=("billing.",))
    print_findings(findings)
    return report_exit_code(findings, args.fail_on or config.fail_on)


def _report_time(text: str) -> Any:
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {text!r}") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _cmd_report(args: argparse.Namespace, config: AuditConfig) -> int:
    from asg_audit.audit import analyze, check_window
    from asg_audit.report import parse_formats, render
    from asg_audit.report.render import check_report_folder, check_report_pointers

    check_window(args.since, args.until)  # named as the flags they came from
    formats = parse_formats(args.format)  # a bad --format fails before the analyses run
    check_report_folder(args.out)  # so does a folder that cannot be written
    check_report_pointers(args.out)  # or a `latest`/`LATEST` of the user's there
    if args.compare:  # so does a --compare naming no report (or an unreadable summary)
        from asg_audit.report.compare import load_summary, resolve_compare

        load_summary(resolve_compare(args.out, args.compare))
    audit = analyze(config.db_path, since=args.since, until=args.until, config=config)
    report = render(audit, args.out, formats=formats, compare=args.compare)
    for path in report.paths.values():
        print(_shown_path(path))
    return 0


def _cmd_collect(args: argparse.Namespace, config: AuditConfig) -> int:
    from asg_audit.collector import run_collect_command

    _check_flag("--max-rps", "collector", "max_rps", args.max_rps)
    _check_flag("--concurrency", "collector", "concurrency", args.concurrency)
    _check_flag("--deadline", "collector", "deadline_s", args.deadline)
    return run_collect_command(
        config,
        task_ids_file=args.task_ids,
        schedule=args.schedule,
        max_rps=args.max_rps,
        concurrency=args.concurrency,
        deadline_s=args.deadline,
    )


def _cmd_runs(args: argparse.Namespace, config: AuditConfig) -> int:
    from asg_audit.storeinfo import describe_runs

    print(printable(describe_runs(config.db_path, limit=args.limit, command=args.command)))
    return 0


def _cmd_audit(args: argparse.Namespace, config: AuditConfig) -> int:
    from asg_audit.jobs import AuditOutcome, run_audit
    from asg_audit.progress import is_terminal

    if not (math.isfinite(args.wait) and 0 <= args.wait <= _MAX_WAIT_S):
        raise ConfigError(f"--wait must be a number of seconds from 0 to {_MAX_WAIT_S:,}")

    def started(outcome: AuditOutcome) -> None:
        args.audit_outcome = outcome  # for the --json outcome of a run an exception stops

    outcome = _recorded(
        "audit",
        run_audit,
        config,
        out_dir=args.out,
        formats=args.format,
        wait_seconds=args.wait,
        fail_on=args.fail_on,
        since=args.since,
        until=args.until,
        compare=args.compare,
        progress=is_terminal(sys.stderr),
        log=sys.stderr if args.json else sys.stdout,
        on_start=started,
        # with --json the log is stderr already; else the warnings are on stderr too
        warn_on_stderr=not args.json,
    )
    if args.json:
        print(outcome_json(outcome))
    else:
        print(_run_line(outcome.run_id, outcome.summary))
        if outcome.report_dir is not None:
            # the main file written: index.html, else report.md, else summary.json
            paths = outcome.report_paths
            main = next((paths[f] for f in ("html", "md", "json") if f in paths), None)
            shown = main if main is not None else outcome.report_dir
            print(f"report: {_shown_path(shown)}")
    # exit 2 or 3 of a run that ended says why on stderr, last, in both modes: a scheduler that
    # keeps or mails stderr gets the reason with the code (with --json, `error` stays null: the
    # run ended; the JSON's steps say the same)
    if (error := outcome_error(outcome)) is not None:
        sys.stdout.flush()
        print(f"asg-audit: error: {printable(error, one_line=True)}", file=sys.stderr)
    return outcome.exit_code


def _run_line(run_id: str, s: dict[str, Any]) -> str:
    """Return the line an audit run ends with: its tasks (the tracked ones not collected yet, as
    the report's headline says them) and its findings by severity, info too (tester T8: with
    `--fail-on info` an audit exited 1 on a line saying "fail 0, warn 0")."""
    found = s.get("findings", {})
    waiting = s.get("tracked_not_collected") or 0
    tracked = f" (and {waiting:,} tracked, not collected)" if waiting else ""
    return (
        f"run {run_id}: {s.get('tasks', 0):,} tasks{tracked}, {s.get('settled', 0):,} settled;"
        f" findings fail {found.get('fail', 0)}, warn {found.get('warn', 0)},"
        f" info {found.get('info', 0)}"
    )


def _shown_path(path: os.PathLike[str]) -> str:
    """A written file's name as printed: one line, and a relative name starting with `-` keeps
    a `./` (`--out ./-dash`), so that pasted into another command it is not an option."""
    text = printable(path, one_line=True)
    return f"./{text}" if text.startswith("-") else text


_MAX_WAIT_S = 86_400


def _check_flag(flag: str, section: str, key: str, value: Any) -> None:
    """Raise ConfigError when a flag's value is outside the range of the setting it sets."""
    from asg_audit.config import setting_problem

    if value is None:
        return
    problem = setting_problem(section, key, value)
    if problem is not None:
        # one line naming the setting, the allowed range, the value and the flag
        raise ConfigError(f"{section}.{key} must be {problem.removeprefix('expected ')} ({flag})")


def _count(text: str) -> int:
    """argparse type: a whole number of at least 1 (and within int64, as DuckDB takes it)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    if value > 2**63 - 1:
        raise argparse.ArgumentTypeError(f"must be at most {2**63 - 1:,}, got {text}")
    return value


def _compare_run(text: str) -> str:
    """argparse type: a run id or 'previous'; never empty (`--compare "$PREV"` with it unset)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a run id or 'previous', got an empty value")
    return text


def _time_scale(text: str) -> float:
    """argparse type: a finite number of wall seconds per simulated second, above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _port_type(highest: int) -> Callable[[str], int]:
    def port(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
        if not 0 <= value <= highest:
            raise argparse.ArgumentTypeError(f"must be from 0 (a free port) to {highest}")
        return value

    port.__name__ = "port"
    return port


def _callback_url(text: str) -> str:
    """argparse type: an absolute http(s) URL with a host (the Gateway refuses others)."""
    from asg_audit.webhooks import check_callback_url

    try:
        return check_callback_url(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that keeps its last usage error (for the `audit --json` outcome)."""

    last_error: str | None = None

    def error(self, message: str) -> NoReturn:
        _Parser.last_error = message
        super().error(message)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="asg-audit",
        description="Audit the settlements of the ASG labeling service.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("ingest", help="ingest exported result files and webhook logs")
    _add_common(p)
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="files, folders or globs; - reads NDJSON on stdin"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_ingest)

    p = sub.add_parser("track", help="register submitted tasks from a CSV or NDJSON export")
    _add_common(p)
    p.add_argument("file", metavar="FILE")
    p.set_defaults(handler=_cmd_track)

    p = sub.add_parser("db", help="inspect the store")
    dbsub = p.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    pi = dbsub.add_parser("info", help="table counts and the schema version")
    _add_common(pi)
    pi.set_defaults(handler=_cmd_db_info)

    p = sub.add_parser("demo", help="run the main job end to end on a fresh store")
    p.add_argument(
        "--config", metavar="FILE", help="TOML config (default ./asg_audit.toml if present)"
    )
    # Refused with a clear message: the demo's store is always DIR/demo.duckdb (recreated).
    p.add_argument("--db", help=argparse.SUPPRESS)
    p.add_argument(
        "--out",
        metavar="DIR",
        default="demo-output",
        help="demo folder: its store DIR/demo.duckdb is recreated (default demo-output);"
        " the demo takes no --db",
    )
    p.add_argument(
        "--tasks", type=_count, default=3000, metavar="N", help="simulated tasks (default 3000)"
    )
    p.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    p.add_argument(
        "--time-scale",
        type=_time_scale,
        default=0.02,
        metavar="S",
        help="wall seconds per simulated second (default 0.02)",
    )
    p.add_argument(
        "--faults",
        choices=("none", "mild", "harsh"),
        default="mild",
        help="simulated faults: 429s, 5xx, drops, truncated bodies (default mild)",
    )
    p.set_defaults(handler=_cmd_demo)

    p = sub.add_parser("simulate", help="serve a seeded simulator of the Gateway and chain index")
    p.add_argument("--seed", type=int, default=7, help="world seed (default 7)")
    p.add_argument("--tasks", type=_count, default=5000, help="tasks in the world (default 5000)")
    p.add_argument(
        "--time-scale",
        type=_time_scale,
        default=0.05,
        help="wall seconds per simulated second (default 0.05)",
    )
    p.add_argument("--faults", choices=["none", "mild", "harsh"], default="none")
    p.add_argument(
        "--anomalies",
        choices=["all", "none"],
        default="all",
        help="plant a few anomalies of every kind (default) or none",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--port",
        type=_port_type(65534),
        default=0,
        help="Gateway port, chain on port+1 (default 0: free ports)",
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="where to write submissions and ground truth (default: a new folder asg-sim-* in"
        " the temp folder, kept after the simulator stops)",
    )
    p.set_defaults(handler=_cmd_simulate)

    p = sub.add_parser("serve-webhooks", help="receive signed task.settled deliveries (uvicorn)")
    _add_common(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument(
        "--port", type=_port_type(65535), default=8088, help="port (default 8088; 0: a free one)"
    )
    p.add_argument(
        "--secret-file",
        metavar="FILE",
        help="file with the webhook secret(s), one per line; adds to ASG_WEBHOOK_SECRET",
    )
    p.set_defaults(handler=_cmd_serve_webhooks)

    p = sub.add_parser("webhooks", help="manage webhook registrations with the Gateway")
    whsub = p.add_subparsers(dest="webhooks_command", metavar="SUBCOMMAND", required=True)
    pw = whsub.add_parser("register", help="register a callback URL (POST /v1/webhooks)")
    _add_common(pw)
    pw.add_argument(
        "--url",
        required=True,
        type=_callback_url,
        help="public http(s) URL of the receiver's /webhooks/asg",
    )
    pw.add_argument(
        "--events",
        nargs="+",
        default=["task.settled"],
        metavar="EVENT",
        help="events to subscribe (default task.settled)",
    )
    pw.add_argument(
        "--secret-file",
        metavar="FILE",
        help="file with the secret to register (first one); else ASG_WEBHOOK_SECRET",
    )
    pw.set_defaults(handler=_cmd_webhooks_register)

    p = sub.add_parser(
        "verify-chain", help="verify settled tasks' txids on the chain index (WoC-compatible)"
    )
    _add_common(p)
    p.add_argument("--rps", type=float, help="requests per second to the index (default 3)")
    p.add_argument(
        "--fail-on",
        choices=["info", "warn", "fail"],
        help="exit 1 at findings of this severity or worse (default: config fail_on)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--recheck-unknown",
        action="store_true",
        help="ask the index now about every txid it said it does not know, whatever their"
        " back-off ([chain] unknown_recheck_seconds)",
    )
    p.set_defaults(handler=_cmd_verify_chain)

    p = sub.add_parser("billing", help="fetch monthly usage and invoices; reconcile with results")
    _add_common(p)
    p.add_argument(
        "--month",
        action="append",
        metavar="YYYY-MM",
        help="only this month (repeatable; default: every month with data)",
    )
    p.add_argument(
        "--fail-on",
        choices=["info", "warn", "fail"],
        help="exit 1 at findings of this severity or worse (default: config fail_on)",
    )
    p.set_defaults(handler=_cmd_billing)

    p = sub.add_parser("report", help="write the HTML, Markdown and JSON report of the store")
    _add_common(p)
    p.add_argument(
        "--out",
        metavar="DIR",
        default="reports",
        help="reports folder; writes DIR/<run-id>/ and DIR/latest (default reports)",
    )
    p.add_argument(
        "--format",
        default="html,md,json",
        metavar="LIST",
        help="comma-separated: html, md, json (default all; summary.json always)",
    )
    p.add_argument(
        "--since",
        type=_report_time,
        metavar="WHEN",
        help="only tasks created at or after this ISO date/time (UTC if no zone)",
    )
    p.add_argument(
        "--until",
        type=_report_time,
        metavar="WHEN",
        help="only tasks created before this ISO date/time (UTC if no zone)",
    )
    p.add_argument(
        "--compare",
        type=_compare_run,
        metavar="RUN",
        help="compare with an earlier report in --out: a run id or 'previous'",
    )
    p.set_defaults(handler=_cmd_report)

    p = sub.add_parser(
        "collect",
        help="poll the Gateway for every tracked task that is not final (resumable)",
        description="Poll GET /v1/tasks/{id}/result for every tracked task that is not final, "
        "within a global request budget; run it again to resume. The API key comes from "
        "ASG_API_KEY (or API_KEY), the URL from ASG_BASE_URL; [collector] in the config file "
        "sets the defaults of the flags below.",
    )
    _add_common(p)
    p.add_argument("--task-ids", metavar="FILE", help="poll only these ids (one a line)")
    p.add_argument(
        "--schedule",
        choices=("fixed", "documented", "adaptive"),
        help="poll schedule (default adaptive)",
    )
    p.add_argument("--max-rps", type=float, metavar="N", help="request budget (default 10/s)")
    p.add_argument("--concurrency", type=int, metavar="N", help="requests in flight (default 16)")
    p.add_argument(
        "--deadline",
        type=float,
        metavar="SECONDS",
        help="a task still pending this long after we first saw it becomes expired (default 3600)",
    )
    p.set_defaults(handler=_cmd_collect)

    p = sub.add_parser("runs", help="list the latest runs recorded in the store")
    _add_common(p)
    p.add_argument("--limit", type=_count, default=20, metavar="N", help="how many (default 20)")
    p.add_argument(
        "--command",
        metavar="NAME",
        help="only runs of this command (audit, ingest, track, collect, verify-chain, ...)",
    )
    p.set_defaults(handler=_cmd_runs)

    p = sub.add_parser(
        "audit",
        help="the scheduled job: ingest, collect, verify, reconcile, analyse, report, exit code",
        description="One incremental audit run: ingest the [audit] drop_folders, collect pending "
        "tasks, verify new txids on chain, reconcile billing, analyse, check, write the report "
        "and record the run. Exit codes: 0 ok, 1 findings at or above --fail-on, 2 usage or "
        "config error, 3 incomplete (API unreachable, key refused, database busy, interrupted).",
    )
    _add_common(p)
    p.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="reports folder (default [audit] report_dir, else reports)",
    )
    p.add_argument(
        "--format",
        default="html,md,json",
        metavar="LIST",
        help="comma-separated: html, md, json (default all)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for an overlapping run to finish (default: exit 3 at once)",
    )
    p.add_argument(
        "--fail-on",
        choices=("info", "warn", "fail"),
        default=None,
        help="exit 1 at findings of this severity or worse (default: the config's [audit]"
        " fail_on, else its fail_on, else fail)",
    )
    p.add_argument(
        "--since", type=_report_time, metavar="WHEN", help="only tasks created from then"
    )
    p.add_argument("--until", type=_report_time, metavar="WHEN", help="only tasks created before")
    p.add_argument(
        "--compare",
        type=_compare_run,
        metavar="RUN",
        help="compare with an earlier report: a run id or 'previous'",
    )
    p.add_argument("--json", action="store_true", help="print the outcome as JSON on stdout")
    p.set_defaults(handler=_cmd_audit)

    return parser


# -- output that cannot be written -----------------------------------------------------------

# Why a stream's output was lost ({"standard output": "No space left on device"}), this command.
_LOST: dict[str, str] = {}


def _guard_output() -> Callable[[], None]:
    """Put `GuardedStream`s in place of sys.stdout and sys.stderr; return what undoes it.

    Output that cannot be written (a full disk under the log, EIO, a stream closed at the start:
    None) is noted in `_LOST`, never raised, and the stream's descriptor is pointed at
    /dev/null; EPIPE (the reader gone) still stops the command. `main` then exits 3 and says
    so (on stderr, when it can be written).
    """
    _LOST.clear()
    saved = sys.stdout, sys.stderr
    if sys.stdout is None or sys.stderr is None:
        # closed at the start (`>&-`, `2>&-`): output lost from the start, noted in `_LOST`
        # by the GuardedStream standing for it; the descriptor itself is pointed at /dev/null,
        # so that no file opened later (the store) gets it
        open_missing_std_fds()
    if not isinstance(sys.stdout, GuardedStream):
        sys.stdout = cast(TextIO, GuardedStream(sys.stdout, _STDOUT, _LOST, own_process=True))
    if not isinstance(sys.stderr, GuardedStream):
        sys.stderr = cast(TextIO, GuardedStream(sys.stderr, _STDERR, _LOST, own_process=True))

    def restore() -> None:
        sys.stdout, sys.stderr = saved

    return restore


def _output_exit_code(code: int) -> int:
    """Return the exit code of a command that ended with `code`, its output flushed: 141 if the
    reader went away at the last flush, 3 (for a 0 or 1) if output was lost, else `code`."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()  # a block-buffered log is written here, at the latest
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    if not _LOST:
        return code
    if _STDOUT in _LOST:
        # on stderr if it can take it (else noted, and nothing more is tried)
        with contextlib.suppress(OSError):
            print(f"asg-audit: error: cannot write to {_STDOUT}: {_LOST[_STDOUT]}", file=sys.stderr)
    with contextlib.suppress(OSError):
        if sys.stderr is not None:
            sys.stderr.flush()
    # 0 and 1 say the command did its work and its output is there: it is not
    return EXIT_INCOMPLETE if code in (EXIT_OK, EXIT_FINDINGS) else code


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: its reader went away; what is left to write goes nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code.

    Output that cannot be written (a full disk under the log, EIO) never stops the work: the
    command runs to its end (an audit writes its report and records its run), then exits 3 with
    one line `asg-audit: error: cannot write to standard output: ...` on stderr (when stderr
    can take it). A 2 or 3 it would have exited with stands.
    """
    restore = _guard_output()
    try:
        code = _main(argv)
    except SystemExit as exc:  # argparse: a usage error (2), --help (0)
        if isinstance(exc.code, int) or exc.code is None:
            exc.code = _output_exit_code(exc.code or 0)
        raise
    else:
        return _output_exit_code(code)
    finally:
        restore()


def _main(argv: Sequence[str] | None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    args: argparse.Namespace | None = None
    config: AuditConfig | None = None
    _Parser.last_error = None
    try:
        try:
            args = _build_parser().parse_args(words)
        except SystemExit as exc:
            if exc.code == EXIT_USAGE and _Parser.last_error is not None:
                # argparse printed the usage and the error on stderr
                print_stopped_audit(args, words, EXIT_USAGE, _Parser.last_error)
            raise
        config = _config(args)
        handler: Handler = args.handler
        return handler(args, config)
    except AuditError as exc:
        print(f"asg-audit: error: {printable(exc)}", file=sys.stderr)
        print_stopped_audit(args, words, exc.exit_code, printable(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        print("asg-audit: interrupted", file=sys.stderr)
        print_stopped_audit(args, words, EXIT_INCOMPLETE, "interrupted")
        return EXIT_INCOMPLETE
    except BrokenPipeError:
        # The reader of the output went away (`asg-audit runs | head`): stop quietly, as Unix
        # tools do; the work itself is done (and stored).
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        from pathlib import Path

        from asg_audit.interrupts import is_interrupt
        from asg_audit.storefile import damaged_in_use

        if config is not None and (damaged := damaged_in_use(Path(config.db_path), exc)):
            # a block damaged inside the store, read by a command that opened it on a thread
            # of its own (the webhook receiver's writer) rather than in an open_store block
            print(f"asg-audit: error: {printable(damaged)}", file=sys.stderr)
            print_stopped_audit(args, words, damaged.exit_code, printable(damaged))
            return damaged.exit_code
        if not is_interrupt(exc):  # DuckDB's forms of an interrupted statement are one
            raise
        print("asg-audit: interrupted", file=sys.stderr)
        print_stopped_audit(args, words, EXIT_INCOMPLETE, "interrupted")
        return EXIT_INCOMPLETE


def print_stopped_audit(
    args: argparse.Namespace | None, words: list[str], exit_code: int, error: str
) -> None:
    """Print the `--json` outcome of an `audit --json` that could not start or was stopped.

    `audit --json` always prints its outcome on stdout, with the keys of a finished run's: a
    scheduler that parses it gets the exit code and the error also when the run could not
    start (a bad option or config, the database busy, another audit running). Arguments that
    did not parse are read as written: `audit` first, `--json` among its options.
    """
    if args is not None:
        wanted = args.command == "audit" and bool(args.json)
    else:
        wanted = words[:1] == ["audit"] and "--json" in words[1:]
    if not wanted:
        return
    outcome = getattr(args, "audit_outcome", None)
    print(outcome_json(outcome, exit_code=exit_code, error=error), flush=True)
