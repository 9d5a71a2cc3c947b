"""``make run``: the whole Gantry stack on one machine, zero config.

Steps: load or generate dev secrets in the data dir, migrate the catalog, start (or reuse) the
Temporal dev server, start moto as local AWS (unless AWS is configured), the demo deploy
receiver and stand-ins for Jira and Slack (each unless its ``GANTRY_*`` settings are set), start
the API and wait for ``/readyz``, start the worker, apply the example portal on the first start
only (and sync its pull data sources once), print where everything is, then watch the children.
Local AWS starts with one CloudFormation stack made "outside Gantry" (``payouts-production``) for
the portal's ``aws_stacks`` source to find; the ``github_deployments`` webhook source checks
signatures with the generated ``GANTRY_WEBHOOK_GITHUB_SECRET``, printed with the admin token.
Ctrl-C or SIGTERM stops everything this started; a child that dies on its own stops the rest
with a non-zero exit.
Every ``GANTRY_*`` variable already set in the environment wins over the generated defaults;
``GANTRY_DEMO_MOTO_PORT``, ``GANTRY_DEMO_RECEIVER_PORT``, ``GANTRY_DEMO_JIRA_PORT`` and
``GANTRY_DEMO_SLACK_PORT`` pin the demo's ports (default: 5000, 8099, 8100 and 8101, or the
next free ones).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urlsplit

import botocore.session
import httpx
import yaml
from botocore.exceptions import BotoCoreError, ClientError

from devtools.processes import ChildProcess, port_answers, url_answers
from devtools.testing import eventually
from worker import SEARCH_ATTRIBUTES

if TYPE_CHECKING:
    from cli import Gantry

ROOT = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
GENERATED_SECRETS = (
    "GANTRY_ADMIN_TOKEN",
    "GANTRY_SERVICE_TOKEN",
    "GANTRY_SECRET_KEY",
    "GANTRY_WEBHOOK_SECRET",
    # The example portal's webhook source (portal/data-sources/github_deployments.yaml) checks
    # GitHub-style signatures with this one.
    "GANTRY_WEBHOOK_GITHUB_SECRET",
)
WEBHOOK_SOURCE, WEBHOOK_SECRET = "github_deployments", "GANTRY_WEBHOOK_GITHUB_SECRET"
# The portal's actions call the receiver here; apply_portal rewrites it when the port moves.
RECEIVER_URL = "http://127.0.0.1:8099"
MOTO_PORT = 5000
LOCAL_AWS = {"AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# Local AWS starts empty: this stack stands for infrastructure made outside Gantry, which the
# portal's aws_stacks source turns into an `environment` entity (its tags say which).
DEMO_STACK = "payouts-production"
DEMO_STACK_TAGS = {"environment-type": "production", "service": "payouts", "team": "payments-team"}
DEMO_STACK_TEMPLATE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Description": "Payouts in production, deployed outside Gantry (a make run demo stack)",
    "Resources": {
        "Events": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "payouts-production-events"}}
    },
}
# The Jira and Slack stand-ins (devtools/standins) and the credentials they accept.
JIRA_PORT, SLACK_PORT = 8100, 8101
JIRA_STANDIN = {"GANTRY_JIRA_USER": "bot@example.com", "GANTRY_JIRA_TOKEN": "jira-token"}
SLACK_STANDIN = {"GANTRY_SLACK_BOT_TOKEN": "xoxb-test"}
# Written when the example portal is applied: later starts leave the catalog alone.
PORTAL_MARKER = "portal-applied.json"
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 25.0  # longer than the worker's graceful shutdown


class StackError(Exception):
    """A step failed; the message says which and where its log is."""


class Stack:
    """The child processes this run started, each logging to ``<data dir>/logs/<name>.log``."""

    def __init__(self, logs: Path, env: dict[str, str]) -> None:
        self.logs, self.env = logs, env
        self.children: dict[str, ChildProcess] = {}
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, command: list[str]) -> None:
        # The environment is shared, not copied: stand-ins started first add their URLs to it.
        child = ChildProcess(command, log_file=self.log(name), env=self.env, name=name)
        self.children[name] = child.launch()

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def check_alive(self) -> None:
        for name, child in self.children.items():
            code = child.process.poll() if child.process else None
            if code is not None:
                raise StackError(f"{name} exited unexpectedly with code {code}{child.tail(15)}")

    def tail(self, name: str, lines: int = 15) -> str:
        return self.children[name].tail(lines)

    def stop_all(self) -> None:
        """Stop children newest first (the worker drains before Temporal goes): SIGTERM, wait,
        then SIGKILL whatever has not exited after the grace period."""
        for name, child in reversed(self.children.items()):
            if child.alive() and not child.stop(STOP_TIMEOUT):
                print(f"devstack: {name} did not stop in {STOP_TIMEOUT:.0f}s; it was killed", flush=True)


def load_dev_secrets(data_dir: Path) -> dict[str, str]:
    """Dev secrets from ``dev-secrets.env``, generating (and persisting) the missing ones."""
    path = data_dir / "dev-secrets.env"
    stored: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                stored[key.strip()] = value.strip()
    missing = [name for name in GENERATED_SECRETS if not stored.get(name)]
    if missing:
        for name in missing:
            stored[name] = ("gantry_dev_" if name.endswith("_TOKEN") else "") + secrets.token_urlsafe(32)
        data_dir.mkdir(parents=True, exist_ok=True)
        lines = ["# Generated by `make run` for local development; delete to rotate."]
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable by others
        with os.fdopen(fd, "w") as file:
            file.write("\n".join([*lines, *(f"{k}={v}" for k, v in stored.items())]) + "\n")
    return stored


def stack_environment() -> dict[str, str]:
    """The environment every child gets: the user's, with dev defaults where they set nothing."""
    env = dict(os.environ)
    data_dir = Path(env.get("GANTRY_DATA_DIR", ".gantry")).resolve()
    env["GANTRY_DATA_DIR"] = str(data_dir)
    for key, value in load_dev_secrets(data_dir).items():
        env.setdefault(key, value)
    if "GANTRY_API_URL" not in env:
        host = env.get("GANTRY_API_HOST", "127.0.0.1")
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        env["GANTRY_API_URL"] = f"http://{host}:{env.get('GANTRY_API_PORT', '8000')}"
    # The demo's vendors are local (moto, the receiver): poll them often so runs finish quickly.
    env.setdefault("GANTRY_VENDOR_POLL_INTERVAL", "2")
    # The demo's webhook receiver is on 127.0.0.1, which http.request refuses unless allowed.
    env.setdefault("GANTRY_HTTP_ALLOWED_HOSTS", "127.0.0.1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def migrate_catalog(database_url: str) -> None:
    from catalog.migrate import upgrade

    upgrade(database_url)


def answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    return port_answers(host, int(port))


def start_temporal(stack: Stack, address: str, ui_url: str, data_dir: Path) -> bool:
    """Start the Temporal dev server unless one already answers at ``address``; True if started."""
    if answers(address):
        print(f"devstack: reusing the Temporal server at {address}", flush=True)
        return False
    host, _, port = address.rpartition(":")
    command = [
        str(VENV_BIN / "temporal"),
        "server",
        "start-dev",
        "--db-filename",
        str(data_dir / "temporal.db"),
    ]
    command += ["--ip", host, "--port", port, "--ui-port", str(urlsplit(ui_url).port or 8233)]
    command += ["--namespace", "default", "--log-level", "warn", "--ui-disable-news-fetch"]
    for name in SEARCH_ATTRIBUTES:
        command += ["--search-attribute", f"{name}=Keyword"]
    stack.start("temporal", command)
    wait_until(stack, "temporal", lambda: answers(address))
    return True


def first_free_port(start: int) -> int:
    """``start``, or the next port after it that nothing on 127.0.0.1 is bound to."""
    for port in range(start, start + 100):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise StackError(f"no free port in {start}..{start + 99}")


def demo_port(env: dict[str, str], variable: str, default: int) -> int:
    return int(env[variable]) if env.get(variable) else first_free_port(default)


def aws_configured() -> bool:
    """AWS_ENDPOINT_URL is set, or boto3 finds credentials here. Instance metadata is not asked:
    offline it stalls, and on an instance the user would have set AWS_ENDPOINT_URL or a profile."""
    if os.environ.get("AWS_ENDPOINT_URL"):
        return True
    session = botocore.session.Session()
    try:
        session.get_component("credential_provider").remove("iam-role")
        return session.get_credentials() is not None
    except BotoCoreError:  # e.g. AWS_PROFILE names a missing profile: the user meant real AWS
        return True


def start_local_aws(stack: Stack, env: dict[str, str]) -> str | None:
    """Start moto's server as local AWS unless AWS is configured, and point the children at it;
    its endpoint URL, or None."""
    if aws_configured():
        return None
    moto = VENV_BIN / "moto_server"
    if not moto.exists():
        print("devstack: moto is not installed (pip install -e '.[dev]'): AWS steps are off", flush=True)
        return None
    port = demo_port(env, "GANTRY_DEMO_MOTO_PORT", MOTO_PORT)
    stack.start("moto", [str(moto), "-H", "127.0.0.1", "-p", str(port)])
    wait_until(stack, "moto", lambda: answers(f"127.0.0.1:{port}"))
    endpoint = f"http://127.0.0.1:{port}"
    env["AWS_ENDPOINT_URL"] = endpoint
    env.setdefault("GANTRY_AWS_ENDPOINT_URL", endpoint)  # what the worker's aws data sources read
    for key, value in LOCAL_AWS.items():
        env.setdefault(key, value)
    create_demo_stack(stack, endpoint, env)
    return endpoint


def create_demo_stack(stack: Stack, endpoint: str, env: dict[str, str]) -> None:
    """Create DEMO_STACK in the local AWS this run started (never in an AWS the user configured)
    and wait until it is complete, so the first sync of aws_stacks finds it. A failure is said
    and skipped: the stack is still useful without the demo's data."""
    client = botocore.session.Session().create_client(
        "cloudformation",
        endpoint_url=endpoint,
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )

    def complete() -> bool:
        status = client.describe_stacks(StackName=DEMO_STACK)["Stacks"][0]["StackStatus"]
        return bool(status == "CREATE_COMPLETE")

    try:
        with contextlib.suppress(client.exceptions.AlreadyExistsException):
            client.create_stack(
                StackName=DEMO_STACK,
                TemplateBody=json.dumps(DEMO_STACK_TEMPLATE),
                Tags=[{"Key": k, "Value": v} for k, v in DEMO_STACK_TAGS.items()],
            )
        wait_until(stack, "moto", complete)
    except (BotoCoreError, ClientError) as exc:
        print(f"devstack: could not create the demo stack {DEMO_STACK} in local AWS: {exc}", flush=True)


def start_receiver(stack: Stack, env: dict[str, str], preferred: int | None = None) -> str:
    """Start the demo deploy receiver (devtools/receiver.py), on ``preferred`` if it is free (the
    port the applied portal's URLs name); its base URL."""
    port = demo_port(env, "GANTRY_DEMO_RECEIVER_PORT", preferred or urlsplit(RECEIVER_URL).port or 8099)
    if preferred and port != preferred:
        print(
            f"devstack: port {preferred} is taken: the receiver is on {port}, but the portal's "
            f"actions call {preferred} (apply portal/ again, or free the port)",
            flush=True,
        )
    return _serve(stack, "receiver", "devtools.receiver:create_app", port)


def _serve(stack: Stack, name: str, factory: str, port: int) -> str:
    """Serve an ASGI app factory with uvicorn on 127.0.0.1:``port``; its base URL."""
    command = [sys.executable, "-m", "uvicorn", factory, "--factory", "--no-access-log"]
    stack.start(name, [*command, "--host", "127.0.0.1", "--port", str(port)])
    wait_until(stack, name, lambda: answers(f"127.0.0.1:{port}"))
    return f"http://127.0.0.1:{port}"


@dataclass
class StandIns:
    """The base URLs of the vendor stand-ins started (None: the user configured that vendor)."""

    jira: str | None = None
    slack: str | None = None


def start_standins(stack: Stack, env: dict[str, str]) -> StandIns:
    """Start a local Jira and Slack for the portal's ``open_readiness_ticket`` unless the user set
    any of that vendor's settings (then it is theirs, real or not), and point the API and the
    worker at them."""
    started = StandIns()
    if not any(env.get(f"GANTRY_JIRA_{part}") for part in ("URL", "USER", "TOKEN")):
        port = demo_port(env, "GANTRY_DEMO_JIRA_PORT", JIRA_PORT)
        started.jira = _serve(stack, "jira", "devtools.standins.jira:create_app", port)
        env.update(JIRA_STANDIN, GANTRY_JIRA_URL=started.jira)
    if not any(env.get(f"GANTRY_SLACK_{part}") for part in ("BOT_TOKEN", "API_URL")):
        port = demo_port(env, "GANTRY_DEMO_SLACK_PORT", SLACK_PORT)
        started.slack = _serve(stack, "slack", "devtools.standins.slack:create_app", port)
        env.update(SLACK_STANDIN, GANTRY_SLACK_API_URL=f"{started.slack}/api/")
    return started


def start_api(stack: Stack, host: str, port: str, api_url: str) -> None:
    command = [sys.executable, "-m", "uvicorn", "api.app:create_app", "--factory"]
    stack.start("api", [*command, "--host", host, "--port", port])

    wait_until(stack, "api", lambda: url_answers(f"{api_url}/readyz"))


def wait_until(stack: Stack, name: str, ready: Callable[[], bool]) -> None:
    def started() -> bool:
        stack.check_alive()
        return ready()

    try:
        eventually(started, timeout=STARTUP_TIMEOUT, interval=0.2, what=f"{name} is ready")
    except TimeoutError:
        raise StackError(f"{name} was not ready after {STARTUP_TIMEOUT:.0f}s{stack.tail(name)}") from None


def portal_marker(data_dir: Path) -> dict[str, Any] | None:
    """What the first start recorded when it applied the example portal, or None."""
    try:
        return cast(dict[str, Any], json.loads((data_dir / PORTAL_MARKER).read_text()))
    except (OSError, ValueError):
        return None


def apply_portal_once(api_url: str, token: str, receiver_url: str, data_dir: Path) -> None:
    """Apply the example portal on the first start only: later starts, and a catalog that
    already has blueprints, are left alone, so nothing a user changed is reset."""
    marker = portal_marker(data_dir)
    if marker is not None:
        print(
            f"devstack: The example portal was applied on {marker.get('applied_at')}; "
            "to apply portal/ again: gantry apply portal/",
            flush=True,
        )
        return
    from cli import ApiError, Gantry

    api = Gantry.connect(api_url, token)
    try:
        if api.request("GET", "/v1/blueprints", params={"limit": 1})["items"]:
            print(
                "devstack: the catalog already has blueprints: the example portal was not applied "
                "(to apply it: gantry apply portal/)",
                flush=True,
            )
            return
    except (ApiError, httpx.HTTPError) as exc:
        print(f"devstack: could not read the catalog ({exc}): the example portal was not applied", flush=True)
        return
    finally:
        api.http.close()
    if apply_portal(api_url, token, receiver_url):
        record = {"applied_at": _now(), "receiver_port": urlsplit(receiver_url).port}
        (data_dir / PORTAL_MARKER).write_text(json.dumps(record) + "\n")


def _now() -> str:
    """RFC 3339, UTC, milliseconds: the one timestamp format."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def apply_portal(api_url: str, token: str, receiver_url: str) -> bool:
    """Apply portal/ as ``gantry apply portal/ --yes`` does (the receiver's URL rewritten when
    it moved); whether it all applied."""
    from cli import ApiError, Gantry
    from portal_as_code.apply import ApplyError, apply_plan
    from portal_as_code.model import ConfigError, load
    from portal_as_code.plan import PlanError, make_plan

    api = Gantry.connect(api_url, token)
    try:
        with tempfile.TemporaryDirectory(prefix="gantry-portal-") as copy:
            directory = portal_copy(Path(copy), receiver_url)
            apply_plan(api, make_plan(api, directory), echo=lambda _line: None)
            print("devstack: applied the example portal (portal/)", flush=True)
            sync_pull_sources(api, [d.spec for d in load(directory) if d.kind == "DataSource"])
        return True
    except (ApiError, ApplyError, ConfigError, OSError, httpx.HTTPError, yaml.YAMLError) as exc:
        # The stack is still useful with a half-applied portal: say what failed and keep running.
        print(f"devstack: applying portal/ failed: {exc}", flush=True)
        return False
    except PlanError as exc:
        print("devstack: applying portal/ failed: " + "; ".join(exc.problems), flush=True)
        return False
    finally:
        api.http.close()


def portal_copy(target: Path, receiver_url: str) -> Path:
    """portal/ as it applies on this stack: a copy whose demo receiver URL points at the
    receiver actually started (its port moves when the default one is taken)."""
    for source in (ROOT / "portal").rglob("*"):
        if source.is_file() and source.suffix in {".yaml", ".yml"}:
            copy = target / source.relative_to(ROOT / "portal")
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(source.read_text().replace(RECEIVER_URL, receiver_url))
    return target


def sync_pull_sources(api: Gantry, sources: list[dict[str, Any]]) -> None:
    """Start one sync of each scheduled data source just applied, so its entities are there
    before its schedule first fires (which may be up to a whole interval later)."""
    from cli import ApiError

    for spec in sources:
        if not spec.get("schedule"):
            continue
        try:
            api.request("POST", f"/v1/data-sources/{spec['identifier']}/syncs")
        except (ApiError, httpx.HTTPError) as exc:
            print(f"devstack: could not start a sync of {spec['identifier']}: {exc}", flush=True)
            continue
        print(f"devstack: syncing {spec['identifier']} now (then every {spec['schedule']})", flush=True)


def print_banner(
    env: dict[str, str], stack: Stack, receiver_url: str, aws_endpoint: str | None, standins: StandIns
) -> None:
    api_url, token = env["GANTRY_API_URL"], env["GANTRY_ADMIN_TOKEN"]
    ui_url = env.get("GANTRY_TEMPORAL_UI_URL", "http://127.0.0.1:8233").rstrip("/")
    namespace = env.get("GANTRY_TEMPORAL_NAMESPACE", "default")
    runs_in_ui = f"{ui_url}/namespaces/{namespace}/workflows?query=" + quote('GantryAction="deploy_service"')
    aws = aws_endpoint or env.get("AWS_ENDPOINT_URL") or "AWS as configured (boto3)"
    auth = '-H "Authorization: Bearer $GANTRY_TOKEN"'
    body = '{"entity": "payments", "inputs": {"version": "v1.43.0", "environment": "staging"}}'
    logs = f"{stack.logs}/{{{','.join(stack.children)}}}.log"
    jira = env.get("GANTRY_JIRA_URL") or "not configured"
    slack = env.get("GANTRY_SLACK_API_URL") or "https://slack.com/api/"
    webhook = f"{api_url}/v1/webhooks/{WEBHOOK_SOURCE}"
    print(
        f"""
Gantry is running.
  API docs     {api_url}/docs
  Temporal UI  {ui_url}
  admin token  {token}
  deploy hook  {receiver_url}/deliveries (the demo receiver the portal's actions call)
  AWS          {aws}
  Jira         {_standin(standins.jira, jira, "/issues", stack.log("jira"))}
  Slack        {_standin(standins.slack, slack, "/messages", stack.log("slack"))}
  webhooks     {webhook} (GitHub deployment events, signed with ${WEBHOOK_SECRET})
  logs         {logs}

  export GANTRY_API_URL={api_url}
  export GANTRY_TOKEN={token}
  export {WEBHOOK_SECRET}={env.get(WEBHOOK_SECRET, "")}

Try it:
  # deploy payments to staging (an action run; the answer holds its id)
  curl -s -X POST "$GANTRY_API_URL/v1/actions/deploy_service/runs" {auth} \\
    -H "Content-Type: application/json" -d '{body}'
  # the latest deploy_service run, its steps and status
  curl -s "$GANTRY_API_URL/v1/runs?action=deploy_service&limit=1" {auth}
  # what the deploy system received
  curl -s {receiver_url}/deliveries
  # Gantry's deploy runs in Temporal UI
  {runs_in_ui}
  # the latest sync of CloudFormation stacks (local AWS) into environments, with its counts
  curl -s "$GANTRY_API_URL/v1/data-sources/aws_stacks/syncs?limit=1" {auth}

Press Ctrl-C to stop.
""",
        flush=True,
    )


def _standin(url: str | None, configured: str, listing: str, log: Path) -> str:
    """A banner line: where a stand-in lists what it received, or the vendor the user set."""
    if url is None:
        return f"{configured} (your settings)"
    return f"{url}{listing} (a local stand-in; requests also in {log})"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    env = stack_environment()
    os.environ.update(env)  # so Settings, the migration and the CLI see what the children see
    from config import get_settings

    settings = get_settings()
    data_dir = settings.data_dir
    stack = Stack(data_dir / "logs", env)
    print(f"devstack: data in {data_dir}; process output goes to {stack.logs}/*.log", flush=True)
    try:
        migrate_catalog(settings.resolved_database_url)
        start_temporal(stack, settings.temporal_address, settings.temporal_ui_url, data_dir)
        aws_endpoint = start_local_aws(stack, env)
        marker = portal_marker(data_dir) or {}
        receiver_url = start_receiver(stack, env, marker.get("receiver_port"))
        standins = start_standins(stack, env)
        start_api(stack, settings.api_host, str(settings.api_port), env["GANTRY_API_URL"])
        stack.start("worker", [sys.executable, "worker.py"])
        apply_portal_once(env["GANTRY_API_URL"], env["GANTRY_ADMIN_TOKEN"], receiver_url, data_dir)
        print_banner(env, stack, receiver_url, aws_endpoint, standins)
        print_sign_in_link(env["GANTRY_API_URL"], env["GANTRY_ADMIN_TOKEN"])
        while True:
            stack.check_alive()
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\ndevstack: stopping…", flush=True)
        return 0
    except StackError as exc:
        print(f"devstack: {exc}\ndevstack: stopping the rest", file=sys.stderr, flush=True)
        return 1
    finally:
        # A second Ctrl-C must not abandon children half-way through stopping them.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop_all()
        print("devstack: stopped", flush=True)


def print_sign_in_link(api_url: str, token: str) -> None:
    """The web portal's one-click sign-in for the dev admin: a one-time code valid five minutes,
    never the token in a URL (a new link: ``POST /v1/ui/sign-in-codes``)."""
    try:
        answer = httpx.post(
            f"{api_url}/v1/ui/sign-in-codes", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        answer.raise_for_status()
    except httpx.HTTPError as exc:
        print(f"  web portal   {api_url}/login (no sign-in link: {exc})", flush=True)
        return
    print(f"  web portal   {answer.json()['url']} (one click, single use, 5 minutes)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
