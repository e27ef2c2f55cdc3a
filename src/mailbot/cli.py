"""Command line: `mailbot [--config PATH] COMMAND ...` (SPEC §2), with its exit codes."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from imapclient.exceptions import IMAPClientError
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from mailbot import __version__, shadow
from mailbot.app import App, NotReady
from mailbot.calendar import usable_year, years_usable
from mailbot.config import ConfigError, find_config, load_config
from mailbot.errors import UsageError
from mailbot.invocation import app_from, config_from, make_clock
from mailbot.logs import FORMATS, clean, setup_logging
from mailbot.mailbox import FolderMissing, MailboxError
from mailbot.model import SHIPPED as SHIPPED_MODEL
from mailbot.model import ModelError
from mailbot.oauth import OAuthError
from mailbot.outbox.sending import SendingPaused
from mailbot.policy import PolicyError, load_policy
from mailbot.store import PREFIXES, format_cases
from mailbot.templates import TemplateProblem
from mailbot.training import CorpusError
from mailbot.web.commands import add_commands as add_console_commands

EXIT_OK, EXIT_INPUT, EXIT_UNREACHABLE, EXIT_INTERNAL = 0, 1, 2, 3

log = logging.getLogger("mailbot")


def parse_instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a timezone, e.g. {text}+00:00")
    return _in_calendar(value, text)


def _in_calendar(value: Any, text: str) -> Any:
    if not usable_year(value):
        raise argparse.ArgumentTypeError(
            f"{text} is outside the years mailbot's calendars cover ({years_usable()})"
        )
    return value


class _Parser(argparse.ArgumentParser):
    """Bad usage is one line and exit 1 (SPEC §2: argparse's usage block and exit 2 are
    not ours; 2 is for servers that cannot be reached)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"mailbot: {clean(message)} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_INPUT)


def parse_date(text: str) -> date:
    try:
        value = date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc
    return _in_calendar(value, text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mailbot", description=__doc__)
    parser.add_argument("--config", help="config file (default: $MAILBOT_CONFIG, ./mailbot.toml)")
    parser.add_argument("--version", action="version", version=f"mailbot {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        default="text",
        help="text (default) or json: one JSON object per line, for log shippers",
    )
    common = _Parser(add_help=False)
    common.add_argument(
        "--now", type=parse_instant, help="act as if the clock read this ISO 8601 instant"
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    run = sub.add_parser("run", parents=[common], help="the daemon (IMAP IDLE, outbox)")
    run.add_argument("--once", action="store_true", help="one complete cycle, then exit")
    run.add_argument(
        "--shadow",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="decide and record everything, send residents and officers nothing; the "
        "clerk's digest lists what would have gone (default: [council] shadow)",
    )
    run.set_defaults(handler=cmd_run)

    check = sub.add_parser("check", parents=[common], help="validate config, policy, templates")
    check.add_argument("--connect", action="store_true", help="also log in to IMAP and SMTP")
    check.set_defaults(handler=cmd_check)

    cases = sub.add_parser("cases", parents=[common], help="open cases, soonest due first")
    cases.add_argument("--all", action="store_true", help="include responded and closed cases")
    cases.add_argument(
        "--triage", action="store_true", help="only cases whose category mailbot was unsure of"
    )
    cases.add_argument("--json", action="store_true")
    cases.set_defaults(handler=cmd_cases)

    case = sub.add_parser("case", parents=[common], help="one case with its history")
    case.add_argument("ref")
    case.add_argument("--json", action="store_true")
    case.set_defaults(handler=cmd_case)

    deadline = sub.add_parser("deadline", parents=[common], help="dates a message would get")
    deadline.add_argument("--category", required=True, choices=list(PREFIXES))
    deadline.add_argument("--received", required=True, type=parse_instant)
    deadline.add_argument("--policy", help="policy name or file (default: the config's)")
    deadline.add_argument(
        "--stage", type=int, default=1, help="2: a complaint's stage 2, an FOI or EIR review"
    )
    deadline.add_argument("--json", action="store_true")
    deadline.set_defaults(handler=cmd_deadline)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    upgrade = db_sub.add_parser("upgrade", parents=[common], help="create or migrate the schema")
    upgrade.set_defaults(handler=cmd_db_upgrade)

    report = sub.add_parser("report", parents=[common], help="performance against the promises")
    report.add_argument("--from", dest="period_from", required=True, type=parse_date)
    report.add_argument("--to", dest="period_to", required=True, type=parse_date)
    report.add_argument("--format", choices=("html", "csv", "json"), default="html")
    report.add_argument("--output", help="write to this file (default: standard output)")
    report.set_defaults(handler=cmd_report)

    templates = sub.add_parser("templates", help="check or preview the message templates")
    templates_sub = templates.add_subparsers(
        dest="templates_command", required=True, metavar="ACTION", parser_class=_Parser
    )
    tcheck = templates_sub.add_parser("check", parents=[common], help="render every template")
    tcheck.set_defaults(handler=cmd_templates_check)
    preview = templates_sub.add_parser("preview", parents=[common], help="show one message")
    preview.add_argument("name", help="template name, e.g. acknowledgement-foi")
    preview.add_argument("--case", dest="case_ref", help="use this case's real data")
    preview.set_defaults(handler=cmd_templates_preview)

    release = sub.add_parser(
        "release",
        parents=[common],
        help="open and acknowledge a case for a message held as spam or automatic by mistake",
    )
    release.add_argument(
        "message",
        metavar="ID",
        help="the held message's ID from the digest (e.g. 4711), or a released case's reference",
    )
    release.set_defaults(handler=cmd_release)

    replay = sub.add_parser(
        "replay",
        parents=[common],
        help="rehearse a policy on an export of past mail; nothing is sent",
    )
    replay.add_argument(
        "sources",
        metavar="SOURCE",
        nargs="+",
        type=Path,
        help="mbox files, Maildir folders, folders of .eml/.msg files, .pst files; mixed",
    )
    replay.add_argument(
        "--sent",
        metavar="SOURCE",
        type=Path,
        action="append",
        default=[],
        help="the mailbox's sent folder in the export (officers' replies); may be repeated",
    )
    replay.add_argument("--policy", help="policy name or file (default: the config's)")
    replay.add_argument("--report", type=Path, help="write the report here (default: a summary)")
    replay.add_argument(
        "--format",
        choices=("text", "html", "csv", "json"),
        help="the report's format (default: from the --report file's extension)",
    )
    replay.add_argument(
        "--until",
        type=parse_instant,
        help="carry the clock on to this instant (default: the last message's arrival)",
    )
    replay.set_defaults(handler=cmd_replay)

    add_console_commands(sub, common)  # web, users
    outbox = sub.add_parser("outbox", help="messages that did not go: list, resend or dismiss them")
    outbox_sub = outbox.add_subparsers(
        dest="outbox_command", required=True, metavar="ACTION", parser_class=_Parser
    )
    unsent_list = outbox_sub.add_parser(
        "list",
        parents=[common],
        help="what stops sending, and each failed, uncertain or bounced message",
    )
    unsent_list.add_argument(
        "--all", action="store_true", help="also dismissed messages and those waiting"
    )
    unsent_list.add_argument("--json", action="store_true")
    unsent_list.set_defaults(handler=cmd_outbox_list)
    for action, text in (
        ("resend", "send a failed, uncertain, bounced or dismissed message again, once"),
        ("dismiss", "put a failed, uncertain or bounced message aside, unsent"),
    ):
        command = outbox_sub.add_parser(action, parents=[common], help=text)
        command.add_argument("outbox_id", metavar="ID", type=int, help="its ID in outbox list")
        command.set_defaults(handler=cmd_outbox_change, action=action)

    purge = sub.add_parser("purge", parents=[common], help="anonymise long-closed cases")
    purge.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")
    purge.set_defaults(handler=cmd_purge)

    demo = sub.add_parser("demo", parents=[common], help="self-contained run on sample mail")
    demo.add_argument("--keep", action="store_true", help="keep the demo's folder afterwards")
    demo.add_argument(
        "--console",
        action="store_true",
        help="then serve the clerk's console on the demo's data until Ctrl-C",
    )
    demo.add_argument("--port", type=int, default=8080, help="the console's port (default 8080)")
    demo.set_defaults(handler=cmd_demo)

    classify = sub.add_parser("classify", help="measure, build or retrain the classifier")
    classify_sub = classify.add_subparsers(
        dest="classify_command", required=True, metavar="ACTION", parser_class=_Parser
    )
    evaluate = classify_sub.add_parser(
        "evaluate", parents=[common], help="accuracy per category on a labelled corpus"
    )
    evaluate.add_argument(
        "--corpus", type=Path, help="a folder with labels.csv (default: the shared corpus)"
    )
    evaluate.add_argument(
        "--also-train-on",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="when cross-validating, train each fold's model on this corpus too",
    )
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=cmd_classify_evaluate)
    train = classify_sub.add_parser(
        "train", parents=[common], help="build the shipped model from labelled corpora"
    )
    train.add_argument("--corpus", type=Path, action="append", required=True, metavar="DIR")
    train.add_argument("--output", type=Path, default=SHIPPED_MODEL, help="the model file")
    train.set_defaults(handler=cmd_classify_train)
    retrain = classify_sub.add_parser(
        "retrain", parents=[common], help="learn from the officers' #category corrections"
    )
    retrain.set_defaults(handler=cmd_classify_retrain)
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from mailbot.daemon import Daemon, run_once
    from mailbot.outbox.process import SendingStopped

    app = app_from(args)
    wanted = app.cfg.council.shadow if args.shadow is None else args.shadow
    changed = shadow.switch(app.sessions, app.clock.now(), wanted)
    if changed:
        log.warning("%s", changed)
    if args.once:
        count = run_once(app)
        log.info("run --once: %d new message(s)", count)
        return EXIT_OK
    daemon = Daemon(app)
    daemon.install_signal_handlers()
    try:
        daemon.run()
    except SendingStopped as exc:
        return _fail(EXIT_INTERNAL, str(exc))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    cfg = config_from(args)
    load_policy(cfg.council.policy)
    # Secrets are read now so a missing password file shows up here, not at 3 am.
    for box in cfg.all_mailboxes:
        box.password()
    cfg.smtp.password()
    from mailbot.letters import check_all
    from mailbot.model import read_model

    read_model()  # a damaged model file: one line naming it (the daemon would use the rules)

    problems = check_all(App.load(cfg, make_clock(args)))
    if problems:
        raise TemplateProblem(
            problems[0] + (f" (and {len(problems) - 1} more)" if problems[1:] else "")
        )
    if args.connect:
        from mailbot.diagnose import check_connection, failed, format_findings

        findings = check_connection(cfg)
        print(format_findings(findings))
        if failed(findings):
            bad = sum(not f.ok for f in findings)
            return _fail(EXIT_UNREACHABLE, f"{bad} connection check(s) failed; see above")
    for warning in [*cfg.commands.warnings(), *cfg.metrics.warnings()]:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"ok: {find_config(args.config)} (policy {cfg.council.policy})")
    mode = cfg.commands.mode
    print(f"officers' mail is trusted by: {mode or 'nothing (only the sent folder)'}")
    return EXIT_OK


def cmd_cases(args: argparse.Namespace) -> int:
    from mailbot.store import Case, case_json

    app = app_from(args)
    with app.sessions() as session:
        query = select(Case).order_by(Case.respond_by, Case.id)
        if not args.all:
            query = query.where(Case.status == "open")
        if args.triage:
            query = query.where(Case.triage)
        cases = session.scalars(query).all()
        rows = [case_json(c) for c in cases]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_cases(rows))
    return EXIT_OK


def cmd_case(args: argparse.Namespace) -> int:
    from mailbot.store import case_by_ref, case_json

    app = app_from(args)
    with app.sessions() as session:
        case = case_by_ref(session, args.ref)
        if case is None:
            raise UsageError(f"no case {args.ref}")
        data = case_json(case, with_events=True)
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    officer = data["officer"] or {}
    print(f"{data['ref']}  {data['category']}  stage {data['stage']}  {data['status']}")
    print(f"Resident: {data['resident']['name']} <{data['resident']['email']}>")
    print(f"Subject:  {data['subject']}")
    print(f"Officer:  {officer.get('name', '-')} <{officer.get('email', '-')}>")
    print(f"Received: {data['received_at']}   respond by: {data['respond_by']}")
    for ev in data["events"]:
        print(f"  {ev['at']}  {ev['kind']:<16} {ev['detail']}")
    return EXIT_OK


def cmd_deadline(args: argparse.Namespace) -> int:
    from mailbot.deadlines import compute

    if args.policy:
        policy = load_policy(args.policy)
    else:
        policy = load_policy(config_from(args).council.policy)
    final = policy.final_stage(args.category)
    if not 1 <= args.stage <= final:
        raise UsageError(
            f"--stage {args.stage}: {args.category} has stages 1 to {final} in the"
            f" {policy.name} policy"
        )
    dates = compute(policy, args.category, args.received, stage=args.stage)
    data = dates.as_json()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        for key, value in data.items():
            print(f"{key:>15}: {value}")
    return EXIT_OK


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from mailbot.migrations import upgrade

    cfg = config_from(args)
    upgrade(cfg.database.connection_url())
    print("database schema is up to date")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from mailbot import reports

    if args.period_to < args.period_from:
        raise UsageError("--to is before --from")
    app = app_from(args)
    with app.sessions() as session:
        report = reports.build_report(
            session,
            app.policy,
            council=app.cfg.council.name,
            period_from=args.period_from,
            period_to=args.period_to,
            now=app.clock.now(),
        )
    writer = {"html": reports.to_html, "csv": reports.to_csv, "json": reports.to_json}
    text = writer[args.format](report)
    if args.output:
        output = Path(args.output)
        writes = [(output, text)]
        if args.format == "csv":  # the list of breaches is a table of its own
            writes.append((output.with_suffix(".breaches.csv"), reports.breaches_to_csv(report)))
        for path, content in writes:
            try:
                path.write_text(content, encoding="utf-8")
            except OSError as exc:  # a mistyped folder is the caller's to fix: exit 1
                raise UsageError(f"--output: cannot write {path}: {exc.strerror}") from exc
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from mailbot.replay import replay
    from mailbot.replay.report import format_for, outputs

    fmt = format_for(args.report, args.format)  # a bad name: said before the long run
    cfg = config_from(args)
    result = replay(
        cfg,
        args.sources,
        policy=args.policy,
        until=args.until,
        progress=ProgressLine(sys.stderr),
        sent=args.sent,
    )
    for path, text in outputs(result, fmt, args.report):
        if path is None:
            sys.stdout.write(text)
            continue
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--report: cannot write {path}: {exc.strerror}") from exc
        print(f"wrote {path}", file=sys.stderr)
    if result.skipped:
        print(f"skipped {len(result.skipped)} file(s) or message(s); listed in the report",
              file=sys.stderr)  # fmt: skip
    return EXIT_OK


class ProgressLine:
    """How far a long replay has got, on standard error: on a terminal one line kept
    up to date at each percent; otherwise (a log, a pipe) a line at each tenth, and
    nothing for a run of under 100 messages."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.terminal = stream.isatty()
        self.shown = -1

    def __call__(self, done: int, total: int) -> None:
        percent = done * 100 // total
        step = 1 if self.terminal else 10
        if (total < 100 and not self.terminal) or percent // step == self.shown:
            return
        self.shown = percent // step
        line = f"replay: {done:,} of {total:,} messages ({percent}%)"
        if self.terminal:
            end = "\n" if done == total else ""
            self.stream.write(f"\r{line}{end}")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def cmd_templates_check(args: argparse.Namespace) -> int:
    from mailbot.letters import check_all

    cfg = config_from(args)
    problems = check_all(App.load(cfg, make_clock(args)))
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return EXIT_INPUT
    print("ok: every template renders")
    return EXIT_OK


def cmd_templates_preview(args: argparse.Namespace) -> int:
    from mailbot.letters import preview

    app = App.load(config_from(args), make_clock(args))
    if args.case_ref:
        app.require_schema()
    sys.stdout.write(preview(app, args.name, args.case_ref))
    return EXIT_OK


def cmd_release(args: argparse.Namespace) -> int:
    from mailbot.release import ReleaseError, release

    app = app_from(args)
    try:
        print(release(app, args.message))
    except ReleaseError as exc:
        raise UsageError(str(exc)) from exc
    return EXIT_OK


def cmd_outbox_list(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from mailbot.problems import open_problems
    from mailbot.unsent import NEEDS_ATTENTION, unsent, waiting

    app = app_from(args)
    zone = ZoneInfo(app.cfg.council.timezone)

    def local(at: datetime) -> str:
        return f"{at.astimezone(zone):%H:%M %a %d %b}"

    statuses = (*NEEDS_ATTENTION, "dismissed", "paused") if args.all else NEEDS_ATTENTION
    with app.sessions() as session:
        problems = open_problems(session)
        messages, total = unsent(session, statuses=statuses, limit=10_000)
        paused = waiting(session)
    if args.json:
        data = {
            "problems": [
                {"kind": p.kind, "since": p.since.isoformat(), "detail": p.detail} for p in problems
            ],
            "waiting": paused,
            "messages": [m.as_json() for m in messages],
        }
        print(json.dumps(data, indent=2))
        return EXIT_OK
    for problem in problems:
        what = {
            "folder-missing": "Folder missing",
            "sent-copy-failing": "Copies not filed in the sent folder",
        }.get(problem.kind, "Sending is paused")
        retry = f" (next try {local(problem.retry_at)})" if problem.retry_at else ""
        print(f"{what} since {local(problem.since)}: {problem.detail}{retry}")
    if paused:
        print(f"{paused} message(s) waiting for sending to resume; they go once it does.")
    if problems or paused:
        print()
    if not messages:
        print("no messages that failed, are uncertain or bounced")
        return EXIT_OK
    header = ("ID", "STATUS", "KIND", "CASE", "TO", "QUEUED")
    table = [header] + [
        (str(m.id), m.status, m.kind, m.case_ref or "-", m.recipient, local(m.created_at))
        for m in messages
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row, message in zip(table, [None, *messages], strict=True):
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        if message is not None and message.reason:
            print(f"    {clean(message.reason)[:200]}")
    if total > len(messages):
        print(f"... and {total - len(messages)} more")
    print("\nmailbot outbox resend ID sends one again; mailbot outbox dismiss ID puts it aside.")
    return EXIT_OK


def cmd_outbox_change(args: argparse.Namespace) -> int:
    from mailbot.unsent import UnsentError, dismiss, resend

    app = app_from(args)
    change = resend if args.action == "resend" else dismiss
    try:
        print(change(app, args.outbox_id))
    except UnsentError as exc:
        raise UsageError(str(exc)) from exc
    return EXIT_OK


def cmd_purge(args: argparse.Namespace) -> int:
    from mailbot.retention import purge

    app = app_from(args)
    with app.sessions.begin() as session:
        result = purge(session, app.policy, app.clock.now(), dry_run=args.dry_run)
    print(result.summary())
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from mailbot.demo import run_demo

    return run_demo(keep=args.keep, console=args.console, port=args.port)


def _rules_and_model(args: argparse.Namespace) -> tuple[Any, Any]:
    """The council's rules and model when there is a config; else the shipped ones."""
    from mailbot.classify import load_rules
    from mailbot.model import read_model

    try:
        path = find_config(args.config)
    except ConfigError:
        return load_rules(), read_model()
    app = App.load(load_config(path), make_clock(args))
    return app.rules, app.model()


def default_corpus() -> Path:
    """The shared corpus beside a checkout of mailbot (shared/corpora/council-mail)."""
    checkout = Path(__file__).resolve().parents[3]
    corpus = checkout / "shared" / "corpora" / "council-mail"
    if not corpus.is_dir():
        raise UsageError("give --corpus DIR: a folder with labels.csv and the messages")
    return corpus


def cmd_classify_evaluate(args: argparse.Namespace) -> int:
    from mailbot.classify import classify
    from mailbot.model import fingerprint
    from mailbot.training import cross_validate, evaluate, read_corpus

    examples = read_corpus(args.corpus or default_corpus())
    extra = [e for folder in args.also_train_on for e in read_corpus(folder)]
    rules, model = _rules_and_model(args)

    def classifier(message: Any, with_model: Any) -> Any:
        return classify(message, rules, model=with_model)

    seen = sum(fingerprint(e.text) in model.fingerprints for e in examples) if model else 0
    if seen:
        # The model learnt from these messages: judging it on them would flatter it.
        result = cross_validate(examples, classifier, also_train_on=extra)
        result.method += f"; the shipped model was trained on {seen} of these"
    else:
        result = evaluate(examples, classifier, model)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(result.report())
    return EXIT_OK


def cmd_classify_train(args: argparse.Namespace) -> int:
    from mailbot.training import read_corpus, train_model

    examples, sources = [], []
    for folder in args.corpus:
        found = read_corpus(folder)
        examples += found
        sources.append(f"{folder.name} ({len(found)} messages)")
    model = train_model(examples, sources)
    args.output.write_text(json.dumps(model.to_json(), separators=(",", ":")) + "\n")
    layer = model.layers[0]
    print(f"{args.output}: {len(examples)} examples, {len(layer.idf)} words and word pairs")
    return EXIT_OK


def cmd_classify_retrain(args: argparse.Namespace) -> int:
    from mailbot.model import read_model
    from mailbot.store import CouncilModel
    from mailbot.training import corrected_examples, train_corrections

    app = app_from(args)
    with app.sessions.begin() as session:
        examples = corrected_examples(session)
        layer = train_corrections(read_model(), examples)
        session.add(
            CouncilModel(
                created_at=app.clock.now(),
                examples=len(examples),
                layer=json.dumps(layer.to_json(), separators=(",", ":")),
            )
        )
    counts = Counter(e.category for e in examples)
    print(
        f"learnt from {len(examples)} corrected case(s): "
        + ", ".join(f"{n} {c}" for c, n in sorted(counts.items()))
    )
    print("mailbot run uses it from its next reload (systemctl reload mailbot) or restart")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # argparse itself exits 2 on bad usage
    setup_logging(args.log_format, args.verbose)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except (
        ConfigError,
        PolicyError,
        UsageError,
        TemplateProblem,
        ModelError,
        CorpusError,
        FolderMissing,
    ) as exc:
        return _fail(EXIT_INPUT, str(exc))
    except (MailboxError, NotReady, IMAPClientError, OSError, OAuthError, SendingPaused) as exc:
        return _fail(EXIT_UNREACHABLE, str(exc))
    except OperationalError as exc:
        return _fail(EXIT_UNREACHABLE, f"database: {exc.orig}")
    except Exception as exc:
        log.exception("internal error")
        return _fail(EXIT_INTERNAL, f"internal error: {type(exc).__name__}: {exc}")


def _fail(code: int, message: str) -> int:
    print(f"mailbot: {clean(message)}", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
