"""`learnhub`: the operator's command line.

    learnhub demo                  build what is out of date, then run the platform with the demo
    learnhub serve                 run the Hub in the foreground (systemd: deploy/systemd/)
    learnhub edge config [--output FILE]
                                   the TLS edge's nginx site file, from the settings
    learnhub check                 validate settings and every course.yaml
    learnhub courses list          the catalog
    learnhub courses new ID        scaffold a course: course.yaml, a lesson, an nbgrader assignment
    learnhub courses validate [COURSE ...] [--run] [--strict]
                                   check assignments before learners get them
    learnhub grant COURSE USER... [--csv FILE]
                                   give members access to COURSE (a whole class at once)
    learnhub revoke COURSE USER... [--csv FILE]
                                   take it away (stops their course servers; files are kept)
    learnhub materials publish COURSE [--from-instructors | --git URL [--branch B] [--path P]]
                                   a new version of the materials, for each server's next start
    learnhub images build          build the container images that are out of date
    learnhub stripe sync           find or create Stripe prices for courses and plans
    learnhub reconcile             catch up on missed Stripe events, re-apply membership
    learnhub upgrade               migrate both databases after installing a new version
    learnhub backup DEST           a consistent copy of the running platform's state
    learnhub restore SRC           rebuild a platform from a backup, on a fresh data folder
    learnhub grader ACTION COURSE ASSIGNMENT
                                   release | collect | autograde | feedback | export | extend
    learnhub grader worker         run the grading jobs instructors queue from their dashboard

Settings come from `--config FILE`, `LEARNHUB_CONFIG` or `./learnhub.yaml`, plus LEARNHUB_*
secrets in the environment. Errors print one message and exit with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from hub.cli_token import cli_token_file, known_cli_token, require_cli_token
from hub.courses import Catalog, load_courses
from hub.errors import LearnHubError
from hub.grading_jobs import EXPORT_FORMATS
from hub.i18n.money import format_money
from hub.logs import configure_logging
from hub.privilege import become_service_user
from hub.proxy_launch import port_taken
from hub.settings import Process, Settings, load_settings, settings_from_environment

if TYPE_CHECKING:
    from grader.autograde import GradeResult

#: The repository root: jupyterhub_config.py, courses/ and docker/ live here.
ROOT = Path(__file__).resolve().parent.parent


def _settings(
    args: argparse.Namespace, environ: Mapping[str, str], process: Process = "hub"
) -> Settings:
    if args.config:
        return load_settings(Path(args.config), environ, process=process)
    return settings_from_environment(environ, Path.cwd() / "learnhub.yaml", process=process)


def ensure_cli_token(settings: Settings) -> str:
    """The CLI's token: from LEARNHUB_CLI_TOKEN, else generated once for the demo."""
    token = known_cli_token(settings)
    if token:
        return token
    path = cli_token_file(settings)
    if settings.mode == "production":
        raise LearnHubError("LEARNHUB_CLI_TOKEN: required in production mode")
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def _cli_token(settings: Settings) -> str:
    """The Hub token of `learnhub-cli` (:func:`hub.cli_token.require_cli_token`)."""
    return require_cli_token(settings)


def hub_environment(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """Environment for the Hub process: ours plus the CLI's token and the proxy on PATH."""
    env = dict(environ)
    env["LEARNHUB_CLI_TOKEN"] = ensure_cli_token(settings)
    if settings.source != "<defaults>":
        # The Hub must read the very file validated here (`--config` included), from its own
        # working folder (the checkout).
        env["LEARNHUB_CONFIG"] = str(Path(settings.source).resolve())
    tool_bins = [ROOT / "tools" / "node_modules" / ".bin", Path(sys.executable).parent]
    env["PATH"] = os.pathsep.join([*map(str, tool_bins), env.get("PATH", "")])
    return env


def cmd_check(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Validate settings and courses."""
    settings = _settings(args, environ)
    catalog = Catalog.load(settings.courses_dir)
    print(f"settings OK ({settings.source}, mode {settings.mode})")
    print(f"{len(catalog)} courses OK: {', '.join(catalog.ids())}")
    return 0


def cmd_courses_list(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Print the catalog."""
    settings = _settings(args, environ)
    catalog = Catalog.load(settings.courses_dir)
    for entry in catalog:
        course = entry.course
        price = format_money(course.price.amount, course.price.currency)
        print(f"{course.id:<28} {price:>12}  {len(course.assignments)} assignments  {course.title}")
    return 0


def cmd_courses_new(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Scaffold a new course folder that validates, and say what to do next."""
    from hub.course_scaffold import ASSIGNMENT, scaffold_course

    settings = _settings(args, environ)
    folder = scaffold_course(
        settings.courses_dir,
        args.id,
        title=args.title or "",
        instructors=tuple(args.instructor or ()),
    )
    print(f"created {folder}/")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(folder)}")
    print(
        f"next: edit course.yaml and the notebooks, then check the assignment in the grading "
        f"sandbox with `learnhub courses validate {args.id} --run`; release it with "
        f"`learnhub grader release {args.id} {ASSIGNMENT}` once the hub serves the course"
    )
    return 0


def cmd_courses_validate(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Check the courses' assignments: weak test cells (static), and with --run the sandbox."""
    import logging
    import warnings

    from grader.checks.validate import validate_course
    from grader.policy import grading_parallelism, sandbox_policy

    settings = _settings(args, environ)
    entries = load_courses(settings.courses_dir, list(args.course))
    # nbgrader reports every restored test cell ("checksum ... has changed") and SQLAlchemy
    # warns about its session use: expected here, and they would drown the findings.
    logging.getLogger("learnhub.grader.nbgrader").setLevel(logging.ERROR)
    errors = warnings_found = 0
    for entry in entries:
        policy = sandbox_policy(settings, entry.course) if args.run else None
        parallel = min(3, grading_parallelism(settings, entry.course))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=Warning)
            findings = validate_course(
                entry,
                policy=policy,
                parallel=parallel,
                progress=lambda what: print(f"grading {what} in the sandbox", file=sys.stderr),
            )
        for finding in findings:
            print(finding)
        course_errors = sum(f.level == "error" for f in findings)
        course_warnings = len(findings) - course_errors
        checks = "static and sandbox checks" if args.run else "static checks"
        print(f"{entry.course.id}: {course_errors} errors, {course_warnings} warnings ({checks})")
        errors += course_errors
        warnings_found += course_warnings
    if not args.run:
        print(
            "the sandbox checks did not run: add --run to grade each assignment's reference, "
            "release and a cheater"
        )
    return 1 if errors or (args.strict and warnings_found) else 0


def _enrolment_target(words: Sequence[str], catalog: Catalog) -> tuple[str, list[str]]:
    """``COURSE NAME...`` (or the older ``USER COURSE``) -> the course and the names."""
    if words and words[0] in catalog:
        return words[0], list(words[1:])
    if len(words) == 2 and words[1] in catalog:
        return words[1], [words[0]]
    known = ", ".join(catalog.ids()) or "none"
    if len(words) == 2:
        # Either order is accepted, so name both words: the typo may be in either.
        raise LearnHubError(
            f"no such course {words[0]!r} or {words[1]!r} (known: {known}); "
            "write COURSE then the members' names"
        )
    course = words[0] if words else ""
    raise LearnHubError(f"no such course {course!r} (known: {known})")


def _read_roster(args: argparse.Namespace, names: list[str]) -> str:
    """The roster text: the names given, then the lines of ``--csv FILE`` (``-``: stdin)."""
    text = "\n".join(name.replace(",", " ") for name in names)
    if args.csv:
        try:
            data = sys.stdin.read() if args.csv == "-" else Path(args.csv).read_text("utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise LearnHubError(f"cannot read {args.csv}: {exc}") from exc
        text = f"{text}\n{data}" if text else data
    return text


def _change_enrolment(settings: Settings, args: argparse.Namespace, action: str) -> int:
    """Grant or revoke one course for every member listed (names and/or ``--csv``), in one
    process, one transaction and a few Hub calls (hub/enrolment.py); print what changed.

    Both go through the same path as payments: the entitlement is the truth, `hub.access`
    makes the Hub's groups match it (and stops the server of anyone removed). Exit status 1
    when a line was left out (the good lines are applied all the same).
    """
    from hub import enrolment
    from hub.access import hub_groups
    from hub.addresses import hub_api_url
    from hub.i18n import translator
    from hub.store import Database
    from hub.store.revisions import ensure_store

    catalog = Catalog.load(settings.courses_dir)
    course_id, names = _enrolment_target([args.course, *args.users], catalog)
    try:
        roster, errors = enrolment.parse_roster(_read_roster(args, names))
    except enrolment.RosterRefused as exc:
        raise LearnHubError(exc.message(translator("en"))) from exc
    token = _cli_token(settings)
    # LearnHub's database is the service's: write it as the service does (hub/privilege.py).
    become_service_user(settings)
    # Before anything changes in the Hub: a database behind the code is refused here.
    ensure_store(settings.learnhub_db_url)

    async def run() -> enrolment.EnrolmentReport:
        # A class is hundreds of Hub calls (look-ups, then a server stop per member revoked):
        # a busy Hub may answer one of them slowly without being down.
        timeout = enrolment.HUB_TIMEOUT_SECONDS
        async with hub_groups.HubClient(hub_api_url(settings), token, timeout=timeout) as hub:
            db = Database(settings.learnhub_db_url)
            try:
                return await enrolment.change_enrolment(
                    db,
                    catalog,
                    settings,
                    hub,
                    course_id,
                    roster,
                    action=enrolment.Action(action),
                    actor=enrolment.Actor.OPERATOR,
                    by="operator",
                    errors=errors,
                )
            finally:
                db.dispose()

    report = asyncio.run(run())
    for line in report.lines(translator("en")):
        print(line)
    return 1 if report.errors else 0


def cmd_grant(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Give members access to a course."""
    return _change_enrolment(_settings(args, environ), args, "grant")


def cmd_revoke(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Take members' access to a course away."""
    return _change_enrolment(_settings(args, environ), args, "revoke")


def _add_enrolment_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``learnhub grant|revoke COURSE [USER ...] [--csv FILE]`` (and the older USER COURSE)."""
    for name, func, text in (
        ("grant", cmd_grant, "give members access to COURSE (one or a whole class)"),
        (
            "revoke",
            cmd_revoke,
            "take members' access to COURSE away (stops their course servers; files are kept)",
        ),
    ):
        p = sub.add_parser(
            name,
            help=text,
            description=(
                f"{text}. Members are names after COURSE and/or the lines of --csv FILE "
                "(username or username,email; a header line and # comments are skipped). "
                "Every good line is applied in one transaction; each bad line (unknown user, "
                "malformed) is reported and left out, with exit status 1. "
                f"The older order `learnhub {name} USER COURSE` still works."
            ),
        )
        p.add_argument("course", metavar="COURSE", help="the course id")
        p.add_argument("users", nargs="*", metavar="USER", help="members' usernames")
        p.add_argument(
            "--csv", metavar="FILE", help="a roster, one member a line (`-`: standard input)"
        )
        p.set_defaults(func=func)


_PUBLISH_SOURCES = {"course": "the course repository", "instructors": "the instructors' copy"}


def cmd_materials_publish(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Publish a new version of a course's materials; servers get it at their next start."""
    import tempfile

    from hub.publishing import git_checkout, materials_root, publish_materials

    settings = _settings(args, environ)
    catalog = Catalog.load(settings.courses_dir)
    entry = catalog.get(args.course)
    if entry is None:
        known = ", ".join(catalog.ids()) or "none"
        raise LearnHubError(f"no such course {args.course!r} (known: {known})")
    with tempfile.TemporaryDirectory(prefix="learnhub-publish-") as scratch:
        from_folder = None
        if args.git:
            checkout = Path(scratch) / "checkout"
            commit = git_checkout(args.git, args.branch, checkout)
            folder = (checkout / args.path).resolve() if args.path else checkout
            if not folder.is_relative_to(checkout) or not folder.is_dir():
                raise LearnHubError(f"{args.path!r}: no such folder in {args.git}")
            from_folder = (folder, f"git {args.git} {args.branch} {commit[:12]}")
        publication = publish_materials(
            entry,
            root=materials_root(settings),
            instructor_copy=settings.formgrader_dir / entry.course.id,
            by="operator",
            from_course=not args.from_instructors,
            from_folder=from_folder,
        )
    if not publication.made:
        print(f"nothing to publish: {args.course} {publication.version} has these materials")
        return 0
    print(
        f"published {args.course} {publication.version} (from "
        f"{_PUBLISH_SOURCES.get(publication.source, publication.source)}): "
        f"{len(publication.added)} new, {len(publication.changed)} changed, "
        f"{len(publication.removed)} removed; learners get it at their next start"
    )
    for what, names in (
        ("new", publication.added),
        ("changed", publication.changed),
        ("removed", publication.removed),
    ):
        for name in names:
            print(f"  {what}: {name}")
    return 0


def _add_materials_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``learnhub materials publish COURSE [--from-course]``."""
    materials = sub.add_parser("materials", help="course materials learners get in their home")
    materials_sub = materials.add_subparsers(dest="materials_command", required=True)
    publish = materials_sub.add_parser(
        "publish",
        help="publish a new version of courses/COURSE/materials; running learners get it at "
        "their next start, their own edits kept",
    )
    publish.add_argument("course", metavar="COURSE")
    publish.add_argument(
        "--from-instructors",
        action="store_true",
        help="publish the instructors' copy instead (what they edited in their course servers "
        "under ~/grading/materials), as the dashboard's Publish button does",
    )
    publish.add_argument(
        "--git",
        metavar="URL",
        help="publish a git repository instead (one commit deep, on this host; learners' "
        "containers never reach it)",
    )
    publish.add_argument("--branch", default="main", help="--git: branch or tag (default main)")
    publish.add_argument("--path", default="", help="--git: the materials folder in it")
    publish.set_defaults(func=cmd_materials_publish)


def cmd_stripe_sync(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Find or create Stripe prices for every course and plan; print the settings to use."""
    import stripe

    from hub.billing.client import stripe_client
    from hub.billing.prices import sync_prices

    settings = _settings(args, environ)
    catalog = Catalog.load(settings.courses_dir)
    try:
        result = sync_prices(stripe_client(settings), catalog, settings.payments.plans)
    except stripe.StripeError as exc:
        raise LearnHubError(f"Stripe refused: {exc.user_message or exc}") from exc
    for key in result.created:
        print(f"created price {key}")
    print(f"{len(result.courses)} course prices, {len(result.plans)} plan prices in Stripe.")
    print("Put these in your settings file:\n")
    print(result.as_settings_yaml())
    return 0


def cmd_reconcile(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Catch up on missed Stripe events (with Stripe keys), then re-apply course membership."""
    from hub.access import hub_groups
    from hub.access.hub_groups import make_access_sync
    from hub.addresses import hub_api_url
    from hub.billing.fulfilment import Billing
    from hub.billing.reconcile import reconcile
    from hub.enrolment import HUB_TIMEOUT_SECONDS
    from hub.store import Database
    from hub.store.revisions import ensure_store

    settings = _settings(args, environ)
    catalog = Catalog.load(settings.courses_dir)
    token = _cli_token(settings)
    become_service_user(settings)
    ensure_store(settings.learnhub_db_url)

    async def run() -> int:
        db = Database(settings.learnhub_db_url)
        try:
            # At 10,000 members one call (a group's additions, the groups' listing) took longer
            # than the client's usual 10 s on a busy Hub, and the reconcile gave up
            # (benchmarks/scale.py); a reconcile is not interactive and may wait.
            timeout = HUB_TIMEOUT_SECONDS
            async with hub_groups.HubClient(hub_api_url(settings), token, timeout=timeout) as hub:
                sync = make_access_sync(db, catalog, settings, hub)
                if settings.payments.provider == "stripe":
                    from hub.billing.client import stripe_client

                    billing = Billing(settings, db, stripe_client(settings), sync)
                    try:
                        report = await reconcile(billing)
                    finally:
                        await billing.aclose()
                    print(
                        f"events seen {report.events_seen}, applied {len(report.events_applied)}, "
                        f"failed {len(report.events_failed)}; subscriptions checked "
                        f"{report.subscriptions_checked}, changed "
                        f"{len(report.subscriptions_changed)}"
                    )
                else:
                    # The demo checkout delivers its events directly; nothing can be missed.
                    await sync()
                print("course membership re-applied")
        finally:
            db.dispose()
        return 0

    return asyncio.run(run())


def cmd_grader(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """release | collect | autograde | feedback | export | extend, for one assignment."""
    if args.hub_url:
        return _grader_remote(args, environ)
    if args.token_file:
        raise LearnHubError("--token-file goes with --hub-url URL (the hub to run the job on)")
    if args.action == "worker":
        # A managed service of the Hub, given no secret: only its own token (from JupyterHub).
        return _grader_worker(_settings(args, environ, process="worker"), args, environ)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from grader.course import GradingCourse, GradingError
    from hub.grading_worker import quiet_nbgrader_apps

    quiet_nbgrader_apps()

    settings = _settings(args, environ)
    if not args.course or not args.assignment:
        raise LearnHubError(f"learnhub grader {args.action} needs COURSE and ASSIGNMENT")
    course = GradingCourse.for_operator(settings, args.course, token=_cli_token(settings))
    if args.action == "autograde":
        # Autograde ends by recording the grades in LearnHub's database: refuse one behind the
        # code now, not after grading every submission.
        _require_current_store(settings)
    console = Console(stderr=True)
    what = f"{args.course}/{args.assignment}"
    try:
        if args.action == "release":
            with console.status(f"releasing {what}"):
                course.release(args.assignment, force=args.force, from_course=args.from_course)
            print(f"released {what}: learners can fetch it from the Assignments tab")
        elif args.action == "collect":
            with console.status(f"collecting {what}"):
                students = course.collect(args.assignment, from_course=args.from_course)
            print(f"collected {len(students)} submissions of {what}: {', '.join(students)}")
        elif args.action == "autograde":
            with console.status(f"finding new submissions of {what}"):
                plan = course.plan_autograde(
                    args.assignment,
                    student=args.student,
                    regrade_all=args.all,
                    from_course=args.from_course,
                )
            with Progress(
                TextColumn("autograding"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.description}"),
                console=console,
            ) as progress:
                task = progress.add_task(what, total=len(plan.to_grade))

                def advance(result: GradeResult) -> None:
                    progress.update(task, advance=1, description=result.student)

                results = course.autograde(
                    args.assignment, plan, parallel=args.parallel, progress=advance
                )
            for r in results:
                score = "-" if r.score is None else f"{r.score:g}/{r.max_score:g}"
                reason = f" ({r.reason})" if r.reason else ""
                print(f"{r.student:<24} {score:>10}  {r.outcome}{reason}")
            if plan.skipped:
                shown = ", ".join(plan.skipped[:10])
                more = f" and {len(plan.skipped) - 10} more" if len(plan.skipped) > 10 else ""
                count = len(plan.skipped)
                print(
                    f"skipped {count} unchanged submission{'s' if count > 1 else ''} "
                    f"({shown}{more}): graded already; --all regrades them, --student NAME one"
                )
            if any(r.outcome == "error" for r in results):
                return 1
        elif args.action == "feedback":
            with console.status(f"generating and releasing feedback for {what}"):
                students = course.feedback(args.assignment, from_course=args.from_course)
            print(f"feedback released to {len(students)} learners for {what}")
        elif args.action == "export":
            text = course.export_text(args.assignment, exporter=args.exporter)
            if args.output:
                Path(args.output).write_text(text)
                print(f"wrote {args.output}")
            else:
                print(text, end="")
        elif args.action == "extend":
            if not args.student or args.hours is None:
                raise LearnHubError("extend needs --student NAME and --hours N")
            course.grant_extension(args.assignment, args.student, hours=args.hours)
            print(f"{args.student} has {args.hours:g} extra hours for {what}")
    except GradingError as exc:
        raise LearnHubError(str(exc)) from exc
    return 0


def _grader_remote(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """`learnhub grader ACTION --hub-url URL`: queue the job on the hub with the caller's own
    token and follow it (hub/remote_grading.py); nothing runs on this machine."""
    from hub.remote_grading import (
        RemoteGrading,
        RemoteGradingError,
        read_token,
        remote_job,
        run_remote,
    )

    if not args.course or not args.assignment:
        raise RemoteGradingError(f"learnhub grader {args.action} needs COURSE and ASSIGNMENT")
    # Options the hub's job allow-list has no room for are refused here, not silently dropped.
    for flag, given in (("--from-course", args.from_course), ("--parallel", args.parallel)):
        if given:
            raise RemoteGradingError(f"{flag} is for the hub host only; drop it with --hub-url")
    job = remote_job(
        args.action,
        args.assignment,
        force=args.force,
        regrade_all=args.all,
        student=args.student,
        hours=args.hours,
        exporter=args.exporter,
    )
    token = read_token(args.token_file, environ)
    with RemoteGrading(args.hub_url, token) as client:
        return run_remote(
            client,
            args.course,
            job,
            report=lambda line: print(line, file=sys.stderr, flush=True),
            output=args.output,
            write=lambda text: print(text, end=""),
        )


def _grader_worker(settings: Settings, args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run the dashboard's grading jobs until stopped: what the Hub's service `grading-worker`
    runs (:func:`hub.grading_worker.run_worker`, without this module's imports)."""
    from hub.grading_worker import run_worker

    if args.course or args.assignment:
        raise LearnHubError("learnhub grader worker takes no COURSE or ASSIGNMENT")
    count = run_worker(settings, environ, once=args.once)
    if args.once:
        print(f"ran {count} grading job{'' if count == 1 else 's'}")
    return 0


def _require_current_store(settings: Settings) -> None:
    """Refuse (as the service's account, whose file it is) a LearnHub database behind the code;
    create a brand-new one at the head."""
    from hub.privilege import prepare_data_dir
    from hub.store.revisions import ensure_store
    from hub.upgrade import call_as

    url = settings.learnhub_db_url

    def check() -> str:
        ensure_store(url)
        return ""

    call_as(prepare_data_dir(settings), check)


def cmd_upgrade(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Migrate JupyterHub's and LearnHub's databases to what this version needs (locked)."""
    from hub.upgrade import upgrade_platform

    settings = _settings(args, environ)
    for line in upgrade_platform(settings, on_wait=lambda what: print(what, file=sys.stderr)):
        print(line)
    return 0


def cmd_backup(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Back up both databases, the exchange store, gradebooks, homes and settings."""
    from hub.backup import backup

    backup(_settings(args, environ), Path(args.dest))
    return 0


def cmd_restore(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Rebuild a platform from a backup onto an empty data folder."""
    from hub.backup import restore

    restore(_settings(args, environ), Path(args.src))
    return 0


def cmd_images_build(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Build the images that are out of date."""
    from hub import images

    extra_ca = Path(args.extra_ca) if args.extra_ca else None
    images.ensure_base_image(ROOT, base_image=args.base_image, force=False, log=print)
    results = images.build_images(
        ROOT, base_image=args.base_image, extra_ca=extra_ca, force=args.force, log=print
    )
    for result in results:
        print(f"{result.name}: {'built' if result.built else 'up to date'}")
    return 0


def cmd_network_apply(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Create the course networks and write their firewall rules (as root; idempotent)."""
    from hub import network

    settings = _settings(args, environ)
    applied = network.apply(settings, swarm_node=args.swarm_node)
    if not applied:
        print(f"nothing to do: spawner.network {settings.spawner.network!r} is not LearnHub's")
    for net in applied:
        print(network.describe(net, swarm_node=args.swarm_node))
    if applied and settings.spawner.backend == "swarm" and not args.swarm_node:
        print("now run `learnhub network apply --swarm-node` as root on every course node")
    return 0


def cmd_network_remove(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Undo `network apply` with the same flag: LearnHub's networks, chains and jumps only."""
    from hub import network

    settings = _settings(args, environ)
    removal = network.remove(settings, swarm_node=args.swarm_node)
    for line in removal.removed + removal.kept:
        print(line)
    if not removal.removed:
        print(
            "nothing to remove: no course network or firewall rule of LearnHub's for "
            f"spawner.network {settings.spawner.network!r} here"
        )
    elif settings.spawner.backend == "swarm" and not args.swarm_node:
        print("now run `learnhub network remove --swarm-node` as root on every course node")
    return 0


def _previous_proxy_running(settings: Settings) -> bool:
    """Whether the proxy named by the Hub's pid file (``data_dir/proxy.pid``) still runs."""
    try:
        pid = int((settings.data_dir / "proxy.pid").read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def _listening_addresses(
    settings: Settings, *, hub_address: bool = True
) -> Iterator[tuple[str, int, str, str]]:
    """(host, port, what listens there, the setting that moves it) for every port a start
    opens on this machine: the proxy's public and API ports, the service's, the Hub's
    (without ``hub_address``: all but the Hub's)."""
    # A proxy left running by the previous Hub (``cleanup_proxy`` is off) holds these two;
    # JupyterHub stops it before starting its own, and hub.proxy_launch checks again then.
    if not _previous_proxy_running(settings):
        bind = urlparse(settings.hub.bind_url)
        public_port = bind.port or (443 if bind.scheme == "https" else 80)
        yield bind.hostname or "", public_port, "where people connect", "hub.bind_url"
        yield "127.0.0.1", settings.hub.proxy_api_port, "the proxy's API", "hub.proxy_api_port"
    yield "127.0.0.1", settings.hub.service_port, "the LearnHub service", "hub.service_port"
    if settings.hub.webhook_port is not None:
        yield "127.0.0.1", settings.hub.webhook_port, "the webhook intake", "hub.webhook_port"
    if not hub_address:
        return
    from hub.addresses import hub_ip  # Docker's client: only for the commands that start a Hub

    # The Docker network's gateway with `hub_ip: auto`: it exists once `learnhub network
    # apply` has run.
    yield hub_ip(settings), settings.hub.hub_port, "the Hub's API", "hub.hub_port"


def refuse_taken_ports(settings: Settings, *, hub_address: bool = True) -> None:
    """Stop a start before anything runs when one of its ports is another program's.

    Otherwise configurable-http-proxy only logs ``EADDRINUSE`` and keeps running, the Hub
    "starts", and nothing is reachable (found by a newcomer with something on :8000).
    """
    for host, port, role, setting in _listening_addresses(settings, hub_address=hub_address):
        if port_taken(host, port):
            raise LearnHubError(
                f"{host or '*'}:{port} ({role}, {setting}) is already in use by another "
                f"program: stop that program, or set {setting} in learnhub.yaml to a free port "
                '(README, "A port already in use?")'
            )


def cmd_demo(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Build what is out of date and run the platform in the foreground."""
    settings = _settings(args, environ)
    catalog = Catalog.load(settings.courses_dir)
    # Before minutes of image builds: all but the Hub's port. The Hub's address (the Docker
    # network's gateway with `hub_ip: auto`) exists once the network does; _exec_hub checks
    # every port.
    refuse_taken_ports(settings, hub_address=False)
    if settings.spawner.backend == "docker" and not args.skip_images:
        from hub import images

        images.ensure_base_image(ROOT, base_image=args.base_image, force=False, log=print)
        images.build_images(ROOT, base_image=args.base_image, log=print)
    if settings.spawner.backend == "docker":
        from hub import network

        network.apply_networks(settings)
    return _exec_hub(settings, catalog, environ, stop_proxy=True)


def cmd_serve(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run the Hub (which starts its proxy, the LearnHub service and the culler) in the
    foreground, as a service manager does: nothing is built, nothing is set up first
    (`learnhub network apply` is the unit's ExecStartPre=)."""
    settings = _settings(args, environ)
    catalog = Catalog.load(settings.courses_dir)
    return _exec_hub(settings, catalog, environ)


def cmd_edge_config(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Write the TLS edge's nginx site file from the settings."""
    from hub import edge

    settings = _settings(args, environ)
    text = edge.render_site(settings)
    if args.output in (None, "-"):
        print(text, end="")
        return 0
    for path in (settings.edge.certificate, settings.edge.certificate_key):
        if path is not None and not path.exists():
            raise LearnHubError(f"{path}: not found; put the certificate files there first")
    # nginx makes the cache folder itself, but not its parent: Debian's package has no
    # /var/cache/nginx, and `nginx -t` then failed on the default edge.cache_dir (found by
    # following docs/how-to/production.md in tests/test_production_howto.py).
    settings.edge.cache_dir.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    target = Path(args.output)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.chmod(0o644)
    partial.replace(target)
    print(f"wrote {target}; check it with `nginx -t`, then `systemctl reload nginx`")
    return 0


def _exec_hub(
    settings: Settings, catalog: Catalog, environ: Mapping[str, str], *, stop_proxy: bool = False
) -> int:
    """Replace this process with JupyterHub on LearnHub's config.

    ``stop_proxy`` (the demo): Ctrl-C stops the proxy too. JupyterHub leaves it running
    (``cleanup_proxy`` is off, so a service manager's restart keeps the site answering), and
    the demo's proxy then answered 503 on its port until killed by hand. Course servers stay
    either way, as across every Hub restart: the next start finds them again.
    """
    env = hub_environment(settings, environ)
    # The demo follows its own code: after a `git pull` it migrates the databases it made
    # (exactly what `learnhub upgrade` does, backup and lock included) and says so.
    from hub.upgrade import upgrade_platform

    refuse_taken_ports(settings)
    for line in upgrade_platform(settings, on_wait=print):
        print(line)
    if shutil.which("configurable-http-proxy", path=env["PATH"]) is None:
        raise LearnHubError(
            "configurable-http-proxy not found: run scripts/setup.sh (it installs it from npm)"
        )
    print(f"LearnHub ({settings.mode}) with {len(catalog)} courses on {settings.public_url}")
    if settings.mode == "demo":
        print("demo accounts: demo-learner, demo-instructor, demo-admin (see README for password)")
    jupyterhub = str(Path(sys.executable).parent / "jupyterhub")
    argv = [jupyterhub, "-f", str(ROOT / "jupyterhub_config.py")]
    if stop_proxy:
        # Command-line config wins over the config file's (traitlets' rule).
        argv.append("--JupyterHub.cleanup_proxy=True")
    os.chdir(ROOT)
    os.execve(jupyterhub, argv, env)  # noqa: S606 - replacing ourselves with the hub on purpose


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `learnhub`."""
    parser = argparse.ArgumentParser(prog="learnhub", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", help="settings file (default: LEARNHUB_CONFIG or ./learnhub.yaml)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the platform with the demo courses")
    demo.add_argument("--skip-images", action="store_true", help="do not build images")
    demo.add_argument("--base-image", default="learnhub/base:bookworm")
    demo.set_defaults(func=cmd_demo)

    sub.add_parser(
        "serve",
        help="run the Hub in the foreground for a service manager (deploy/systemd); builds nothing",
    ).set_defaults(func=cmd_serve)

    sub.add_parser("check", help="validate settings and courses").set_defaults(func=cmd_check)

    edge_parser = sub.add_parser("edge", help="the TLS edge (nginx) in front of the proxy")
    edge_sub = edge_parser.add_subparsers(dest="edge_command", required=True)
    edge_config = edge_sub.add_parser(
        "config", help="write the nginx site file from the settings (edge:, hub.public_url)"
    )
    edge_config.add_argument(
        "--output",
        help="file to write, e.g. /etc/nginx/conf.d/learnhub.conf (default: standard output)",
    )
    edge_config.set_defaults(func=cmd_edge_config)

    courses = sub.add_parser("courses", help="the course catalog")
    courses_sub = courses.add_subparsers(dest="courses_command", required=True)
    courses_sub.add_parser("list", help="list courses").set_defaults(func=cmd_courses_list)
    new = courses_sub.add_parser(
        "new",
        help=(
            "scaffold a course under courses_dir: course.yaml, a lesson notebook and an "
            "nbgrader assignment with a solution, visible and hidden tests"
        ),
    )
    new.add_argument(
        "id", metavar="ID", help="the new course id (lowercase letters, digits, dashes)"
    )
    new.add_argument("--title", help="the course title (default: from the id)")
    new.add_argument(
        "--instructor",
        action="append",
        metavar="USER",
        help="an instructor's hub user name (repeat for more)",
    )
    new.set_defaults(func=cmd_courses_new)
    validate = courses_sub.add_parser(
        "validate",
        help=(
            "check assignments before learners get them; exit status 1 on errors "
            "(and on warnings with --strict)"
        ),
    )
    validate.add_argument(
        "course", nargs="*", metavar="COURSE", help="course ids (default: every course)"
    )
    validate.add_argument(
        "--run",
        action="store_true",
        help=(
            "also grade each assignment in the sandbox: the reference must score full marks, "
            "the release must not, a cheater with always-equal answers must score nothing "
            "(needs Docker and the course image; tens of seconds per assignment)"
        ),
    )
    validate.add_argument(
        "--strict", action="store_true", help="fail (exit status 1) on warnings too"
    )
    validate.set_defaults(func=cmd_courses_validate)

    _add_enrolment_parsers(sub)
    _add_materials_parsers(sub)

    stripe_parser = sub.add_parser("stripe", help="Stripe products and prices")
    stripe_sub = stripe_parser.add_subparsers(dest="stripe_command", required=True)
    stripe_sub.add_parser(
        "sync", help="find or create a Stripe price for every course and plan"
    ).set_defaults(func=cmd_stripe_sync)

    sub.add_parser(
        "reconcile", help="catch up on missed Stripe events and re-apply course membership"
    ).set_defaults(func=cmd_reconcile)

    sub.add_parser(
        "upgrade",
        help="migrate JupyterHub's and LearnHub's databases after installing a new version "
        "(platform stopped; SQLite files are backed up first)",
    ).set_defaults(func=cmd_upgrade)

    backup_parser = sub.add_parser(
        "backup",
        help="copy the running platform's databases, exchange store, gradebooks, homes and "
        "settings (no secrets) into DEST, with a manifest of checksums",
    )
    backup_parser.add_argument("dest", help="a new (or empty) folder")
    backup_parser.set_defaults(func=cmd_backup)
    restore_parser = sub.add_parser(
        "restore",
        help="rebuild a platform from the backup in SRC onto an empty data folder "
        "(checksums verified first; the platform stopped)",
    )
    restore_parser.add_argument("src", help="a folder written by `learnhub backup`")
    restore_parser.set_defaults(func=cmd_restore)

    grading = sub.add_parser("grader", help="assignments: release, collect, grade, feedback")
    grading.add_argument(
        "action",
        choices=["release", "collect", "autograde", "feedback", "export", "extend", "worker"],
        help="worker: run the grading jobs instructors queue from their dashboard (no COURSE "
        "or ASSIGNMENT; started by the Hub as the managed service grading-worker)",
    )
    grading.add_argument("course", nargs="?")
    grading.add_argument("assignment", nargs="?")
    grading.add_argument(
        "--once", action="store_true", help="worker: run the queued jobs, then exit"
    )
    grading.add_argument("--force", action="store_true", help="release: replace a release")
    grading.add_argument(
        "--parallel",
        type=int,
        default=None,
        help="autograde: sandboxes at once (default: grading.sandbox.parallel)",
    )
    grading.add_argument(
        "--from-course",
        action="store_true",
        help="replace the grading source of ASSIGNMENT (and its formgrader edits) with the "
        "course repository's courses/COURSE/source/ASSIGNMENT",
    )
    grading.add_argument(
        "--all",
        action="store_true",
        help="autograde: regrade every collected submission (default: only new or changed)",
    )
    grading.add_argument("--output", help="export: write the CSV to this file")
    grading.add_argument(
        "--exporter",
        choices=list(EXPORT_FORMATS),
        default=EXPORT_FORMATS[0],
        help="export: csv (one row per submission, the default) or moodle (Moodle's grade "
        "import: username and one column per assignment); nbgrader ExportPlugins",
    )
    grading.add_argument("--student", help="extend: the learner; autograde: regrade only them")
    grading.add_argument("--hours", type=float, help="extend: extra hours (0 removes)")
    grading.add_argument(
        "--hub-url",
        help="run the action on this hub as yourself (an instructor of COURSE), from any "
        "machine: the Hub's address as in your browser; the job runs in the hub's grading worker",
    )
    grading.add_argument(
        "--token-file",
        help="--hub-url: a file holding your JupyterHub API token (made on the Hub's token "
        "page, /hub/token); default: $LEARNHUB_TOKEN",
    )
    grading.set_defaults(func=cmd_grader)

    net = sub.add_parser("network", help="isolation of course containers")
    net_sub = net.add_subparsers(dest="network_command", required=True)
    net_apply = net_sub.add_parser(
        "apply", help="create the course networks and their firewall rules (as root)"
    )
    net_apply.add_argument(
        "--swarm-node",
        action="store_true",
        help="on a Swarm course node: its local networks and firewall (run on every node)",
    )
    net_apply.set_defaults(func=cmd_network_apply)
    net_remove = net_sub.add_parser(
        "remove",
        help="undo `network apply`: LearnHub's course networks (once no server is on them), "
        "their firewall chains and the jumps into them; nothing else (as root)",
    )
    net_remove.add_argument(
        "--swarm-node",
        action="store_true",
        help="on a Swarm course node: undo `network apply --swarm-node` there",
    )
    net_remove.set_defaults(func=cmd_network_remove)

    imgs = sub.add_parser("images", help="container images")
    imgs_sub = imgs.add_subparsers(dest="images_command", required=True)
    build = imgs_sub.add_parser("build", help="build the images that are out of date")
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")
    build.add_argument("--extra-ca", help="an extra CA certificate (PEM) to trust during builds")
    build.add_argument("--base-image", default="learnhub/base:bookworm")
    build.set_defaults(func=cmd_images_build)
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    configure_logging("WARNING")
    env = os.environ if environ is None else environ
    try:
        return int(args.func(args, env))
    except LearnHubError as exc:
        print(f"learnhub: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
