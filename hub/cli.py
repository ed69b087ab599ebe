"""`learnhub`: the operator's command line.

    learnhub demo                  build what is out of date, then run the platform with the demo
    learnhub serve                 run the Hub in the foreground (systemd: deploy/systemd/)
    learnhub edge config [--output FILE]
                                   the TLS edge's nginx site file, from the settings
    learnhub check                 validate settings and every course.yaml
    learnhub courses list          the catalog
    learnhub courses validate [COURSE ...] [--run] [--strict]
                                   check assignments before learners get them
    learnhub grant USER COURSE     give USER access to COURSE
    learnhub revoke USER COURSE    take it away (stops their course server; their files are kept)
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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import stripe

from hub.access import hub_groups
from hub.access.status import EntitlementReason
from hub.addresses import hub_api_url
from hub.courses import Catalog, learner_group, load_courses
from hub.errors import LearnHubError
from hub.grading_jobs import EXPORT_FORMATS
from hub.i18n.money import format_money
from hub.logs import configure_logging
from hub.privilege import become_service_user
from hub.settings import Settings, load_settings, settings_from_environment

if TYPE_CHECKING:
    from grader.autograde import GradeResult

#: The repository root: jupyterhub_config.py, courses/ and docker/ live here.
ROOT = Path(__file__).resolve().parent.parent


def _settings(args: argparse.Namespace, environ: Mapping[str, str]) -> Settings:
    if args.config:
        return load_settings(Path(args.config), environ)
    return settings_from_environment(environ, Path.cwd() / "learnhub.yaml")


def admin_token_file(settings: Settings) -> Path:
    """Where the demo keeps its generated admin token (mode 0600)."""
    return settings.data_dir / "admin-token"


def known_admin_token(settings: Settings) -> str | None:
    """LEARNHUB_ADMIN_TOKEN, else the one the demo generated, else None."""
    token = settings.secret("admin_token")
    if token:
        return token
    path = admin_token_file(settings)
    return path.read_text().strip() if path.exists() else None


def ensure_admin_token(settings: Settings) -> str:
    """The admin token: from LEARNHUB_ADMIN_TOKEN, else generated once for the demo."""
    token = known_admin_token(settings)
    if token:
        return token
    path = admin_token_file(settings)
    if settings.mode == "production":
        raise LearnHubError("LEARNHUB_ADMIN_TOKEN: required in production mode")
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def _admin_token_for_cli(settings: Settings) -> str:
    token = known_admin_token(settings)
    if token:
        return token
    raise LearnHubError(
        "no admin token: set LEARNHUB_ADMIN_TOKEN to the token the hub was started with "
        f"(the demo writes one to {admin_token_file(settings)})"
    )


def hub_environment(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """Environment for the Hub process: ours plus the admin token and the proxy on PATH."""
    env = dict(environ)
    env["LEARNHUB_ADMIN_TOKEN"] = ensure_admin_token(settings)
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


def _change_access(settings: Settings, action: str, user: str, course_id: str) -> int:
    """Record the grant or revocation as an entitlement, then apply the desired membership.

    Both go through the same path as payments: the entitlement is the truth, `hub.access`
    makes the Hub's groups match it (and stops the server of anyone removed).
    """
    from hub.access.hub_groups import load_desired_membership
    from hub.store import Database
    from hub.store import repository as repo
    from hub.store.revisions import ensure_store

    catalog = Catalog.load(settings.courses_dir)
    if course_id not in catalog:
        known = ", ".join(catalog.ids()) or "none"
        raise LearnHubError(f"no such course {course_id!r} (known: {known})")
    token = _admin_token_for_cli(settings)
    # LearnHub's database is the service's: write it as the service does (hub/privilege.py).
    become_service_user(settings)
    # Before anything changes in the Hub: a database behind the code is refused here.
    ensure_store(settings.learnhub_db_url)

    async def run() -> int:
        async with hub_groups.HubClient(hub_api_url(settings), token) as hub:
            if action == "grant" and await hub.user(user) is None:
                raise LearnHubError(f"no such user {user!r}: they must sign up (or in) once first")
            db = Database(settings.learnhub_db_url)
            try:
                with db.transaction() as session:
                    if action == "grant":
                        changed = repo.set_manual_access(
                            session, user, course_id, active=True, reason="granted by operator"
                        )
                        sources = ["manual"] if changed else []
                    else:
                        sources = repo.revoke_course(
                            session, user, course_id, reason=EntitlementReason.OPERATOR_REVOKED
                        )
                desired = await asyncio.to_thread(load_desired_membership, db, catalog, settings)
            finally:
                db.dispose()
            changes = await hub_groups.apply_membership(hub, desired)
        group = learner_group(course_id)
        if action == "grant":
            print(f"granted: {user} can now open {course_id}")
        elif user in changes.removed.get(group, set()):
            print(
                f"revoked: {user} can no longer open {course_id} "
                f"(withdrew: {', '.join(sources)}; their files are kept)"
            )
        elif user in desired.get(group, set()):
            print(
                f"{user} still has {course_id} through a membership plan; "
                "cancel the subscription to end it"
            )
        else:
            print(f"nothing to do: {user} had no access to {course_id}")
        return 0

    return asyncio.run(run())


def cmd_grant(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Give a user access to a course."""
    return _change_access(_settings(args, environ), "grant", args.user, args.course)


def cmd_revoke(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Take a user's access to a course away."""
    return _change_access(_settings(args, environ), "revoke", args.user, args.course)


def cmd_stripe_sync(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Find or create Stripe prices for every course and plan; print the settings to use."""
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
    from hub.access.hub_groups import make_access_sync
    from hub.billing.fulfilment import Billing
    from hub.billing.reconcile import reconcile
    from hub.store import Database
    from hub.store.revisions import ensure_store

    settings = _settings(args, environ)
    catalog = Catalog.load(settings.courses_dir)
    token = _admin_token_for_cli(settings)
    become_service_user(settings)
    ensure_store(settings.learnhub_db_url)

    async def run() -> int:
        db = Database(settings.learnhub_db_url)
        try:
            async with hub_groups.HubClient(hub_api_url(settings), token) as hub:
                sync = make_access_sync(db, catalog, settings, hub)
                if settings.payments.provider == "stripe":
                    from hub.billing.client import stripe_client

                    billing = Billing(settings, db, stripe_client(settings), sync)
                    report = await reconcile(billing)
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
    import logging

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from grader.course import GradingCourse, GradingError

    # nbgrader's apps log each step at INFO on the `traitlets` logger; a failed step comes back
    # as a GradingError with nbgrader's reason, so the terminal shows that one line only.
    nbgrader_log = logging.getLogger("traitlets")
    nbgrader_log.propagate = False
    if not any(isinstance(h, logging.NullHandler) for h in nbgrader_log.handlers):
        nbgrader_log.addHandler(logging.NullHandler())

    settings = _settings(args, environ)
    if args.action == "worker":
        return _grader_worker(settings, args, environ)
    if not args.course or not args.assignment:
        raise LearnHubError(f"learnhub grader {args.action} needs COURSE and ASSIGNMENT")
    course = GradingCourse.for_operator(settings, args.course, token=_admin_token_for_cli(settings))
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


def _grader_worker(settings: Settings, args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run the dashboard's grading jobs (grader/worker.py) until stopped."""
    from grader.worker import serve

    if args.course or args.assignment:
        raise LearnHubError("learnhub grader worker takes no COURSE or ASSIGNMENT")
    configure_logging(settings.hub.log_level)
    # As a managed service JupyterHub gives the worker its own token (role
    # learnhub-grading-worker); an operator running it by hand uses the admin token.
    token = environ.get("JUPYTERHUB_API_TOKEN") or _admin_token_for_cli(settings)
    count = serve(
        settings, token=token, poll_seconds=settings.grading.worker.poll_seconds, once=args.once
    )
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
    applied = network.apply_networks(settings)
    if not applied:
        print(f"nothing to do: spawner.network {settings.spawner.network!r} is not LearnHub's")
    for net in applied:
        reach = "internet, no private addresses" if net.internet else "no route out"
        ports = ", ".join(str(p) for p in net.host_ports)
        print(f"{net.name} ({net.bridge}): {reach}; host ports {ports}; containers isolated")
    return 0


def cmd_demo(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Build what is out of date and run the platform in the foreground."""
    settings = _settings(args, environ)
    catalog = Catalog.load(settings.courses_dir)
    if settings.spawner.backend == "docker" and not args.skip_images:
        from hub import images

        images.ensure_base_image(ROOT, base_image=args.base_image, force=False, log=print)
        images.build_images(ROOT, base_image=args.base_image, log=print)
    if settings.spawner.backend == "docker":
        from hub import network

        network.apply_networks(settings)
    return _exec_hub(settings, catalog, environ)


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
    target = Path(args.output)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.chmod(0o644)
    partial.replace(target)
    print(f"wrote {target}; check it with `nginx -t`, then `systemctl reload nginx`")
    return 0


def _exec_hub(settings: Settings, catalog: Catalog, environ: Mapping[str, str]) -> int:
    """Replace this process with JupyterHub on LearnHub's config."""
    env = hub_environment(settings, environ)
    # The demo follows its own code: after a `git pull` it migrates the databases it made
    # (exactly what `learnhub upgrade` does, backup and lock included) and says so.
    from hub.upgrade import upgrade_platform

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

    for name, func, text in (
        ("grant", cmd_grant, "give USER access to COURSE"),
        ("revoke", cmd_revoke, "take USER's access to COURSE away"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("user")
        p.add_argument("course")
        p.set_defaults(func=func)

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
    grading.set_defaults(func=cmd_grader)

    net = sub.add_parser("network", help="isolation of course containers")
    net_sub = net.add_subparsers(dest="network_command", required=True)
    net_sub.add_parser(
        "apply", help="create the course networks and their firewall rules (as root)"
    ).set_defaults(func=cmd_network_apply)

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
