"""Slack approval benchmark: how fast a click is acked, and how fast an approved run moves on.

``python -m bench.approvals [--burst 50] [--rounds 3] [--samples 20]``

On one Temporal dev server started here, the real API (uvicorn subprocess, SQLite file) and
``python worker.py``, both configured for Slack against the fake Slack Web API served in this
process (a subprocess of its own, so the clicking client does not share a GIL with it), and a
webhook receiver in this process noting when each step's request arrives. The action has an
approval gate (approver: bob, DM'd on Slack) and then one ``http.request`` step.

- **ack under a burst**: ``--burst`` runs wait for approval; then one signed Approve click each,
  all at once, to ``POST /v1/slack/interactions``; the time to each 200. Every run must then
  reach its step exactly once, and every Slack message must end up without buttons.
- **decision → run continues**: one waiting run at a time; the time from the click (or, as the
  baseline, ``POST /v1/runs/{id}/approval`` with bob's token) to the step's request at the receiver.

``python -m bench.approvals fake-slack PORT`` is that fake Slack alone. Prints one table and writes it to ``bench/results/approvals.md``; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from slack_sdk.web.async_client import AsyncWebClient

from activities.slack_approvals import ApprovalAction, ApprovalRef
from api.slack_signature import sign
from bench.actions import Receiver, render
from bench.common import ADMIN_TOKEN, percentile, stack_env, write_results

RESULTS = Path(__file__).parent / "results" / "approvals.md"
SIGNING_SECRET = "bench-slack-signing-secret"
ACTION = "bench_gated"
ACK_P99_TARGET_MS = 300.0
CONTINUE_P95_TARGET_MS = 1000.0


def gated_action(receiver_url: str) -> dict[str, Any]:
    return {
        "identifier": ACTION,
        "title": "Bench gated step",
        "trigger": {"operation": "CREATE"},
        "approval": {"required_approvals": 1, "approvers": {"users": ["bob"]}, "timeout": "PT1H"},
        "steps": [
            {"id": "notify", "uses": "http.request", "with": {"url": f"{receiver_url}/hook", "body": {}}}
        ],
    }


def click_body(run_id: str, request_id: str, user: str = "U0BOB", channel: str = "D0BOB") -> bytes:
    """An Approve click, form-encoded as Slack posts it."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "team_id": "T0BENCH"},
        "channel": {"id": channel},
        "container": {"type": "message", "channel_id": channel},
        "trigger_id": f"{time.time_ns()}.1.bench",
        "actions": [
            {
                "type": "button",
                "action_id": ApprovalAction.APPROVE.value,
                "value": ApprovalRef(run_id=run_id, request_id=request_id).encode(),
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed_headers(body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": sign(SIGNING_SECRET, timestamp, body),
    }


class Bench:
    def __init__(
        self, api: httpx.AsyncClient, bob: httpx.AsyncClient, receiver: Receiver, slack: Any
    ) -> None:
        self.api, self.bob, self.receiver, self.slack = api, bob, receiver, slack

    async def waiting_run(self) -> tuple[str, str]:
        """Launch a run and return (run id, approval request id) once bob's DM is posted."""
        launched = await self.api.post(f"/v1/actions/{ACTION}/runs", json={})
        if launched.status_code != 202:
            raise RuntimeError(f"launch refused: {launched.status_code} {launched.text}")
        run_id = launched.json()["id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            approval = (await self.api.get(f"/v1/runs/{run_id}")).json().get("approval") or {}
            if approval.get("status") == "PENDING" and await self.dm_posted(run_id):
                return run_id, str(approval["request_id"])
            await asyncio.sleep(0.05)
        raise RuntimeError(f"run {run_id} never waited for approval with its Slack DM posted")

    async def dm_posted(self, run_id: str) -> bool:
        logs = (await self.api.get(f"/v1/runs/{run_id}/logs")).json()["items"]
        return any(line["message"].startswith("Slack: asked user:bob") for line in logs)

    async def click(self, run_id: str, request_id: str) -> float:
        """One signed click; seconds to the 200."""
        body = click_body(run_id, request_id)
        start = time.perf_counter()
        response = await self.api.post("/v1/slack/interactions", content=body, headers=signed_headers(body))
        elapsed = time.perf_counter() - start
        if response.status_code != 200:
            raise RuntimeError(f"click refused: {response.status_code} {response.text}")
        return elapsed

    async def approve_by_api(self, run_id: str, request_id: str) -> float:
        start = time.perf_counter()
        response = await self.bob.post(f"/v1/runs/{run_id}/approval", json={"decision": "APPROVE"})
        if response.status_code != 200:
            raise RuntimeError(f"approval refused: {response.status_code} {response.text}")
        return time.perf_counter() - start

    async def continues_after(self, decide: Callable[[str, str], Awaitable[float]]) -> float:
        """ms from the decision to the next step's request at the receiver."""
        run_id, request_id = await self.waiting_run()
        arrived = self.receiver.expect(f"{run_id}:notify")
        start = time.perf_counter()
        await decide(run_id, request_id)
        return (await asyncio.wait_for(arrived, 60) - start) * 1000

    async def burst(self, size: int) -> tuple[list[float], list[float], list[str]]:
        """``size`` waiting runs, clicked at once: ack ms, click → step ms, run ids."""
        runs = await asyncio.gather(*(self.waiting_run() for _ in range(size)))
        arrivals = {run_id: self.receiver.expect(f"{run_id}:notify") for run_id, _ in runs}
        start = time.perf_counter()
        acks = await asyncio.gather(*(self.click(run_id, request_id) for run_id, request_id in runs))
        reached = await asyncio.wait_for(asyncio.gather(*arrivals.values()), 120)
        return [a * 1000 for a in acks], [(t - start) * 1000 for t in reached], [r for r, _ in runs]

    async def settled(self, run_ids: list[str]) -> tuple[dict[str, int], bool]:
        """Final statuses, and whether every Slack message of these runs lost its buttons."""
        statuses: dict[str, int] = {}
        for run_id in run_ids:
            for _ in range(200):
                run = (await self.api.get(f"/v1/runs/{run_id}")).json()
                if run["status"] not in ("WAITING_FOR_APPROVAL", "IN_PROGRESS"):
                    break
                await asyncio.sleep(0.05)
            statuses[run["status"]] = statuses.get(run["status"], 0) + 1
        ids = set(run_ids)
        await asyncio.sleep(1.0)  # the outcome update follows the decision
        history = await self.slack.conversations_history(
            channel="D0BOB", include_all_metadata=True, limit=100_000
        )
        messages = [
            m
            for m in history["messages"]
            if ((m.get("metadata") or {}).get("event_payload") or {}).get("run_id") in ids
        ]
        no_buttons = len(messages) == len(ids) and all(
            not any(b.get("type") == "actions" for b in m.get("blocks") or []) for m in messages
        )
        return statuses, no_buttons


async def bench(burst: int, rounds: int, samples: int) -> tuple[list[list[str]], bool]:
    from devtools.processes import ApiProcess, ChildProcess, WorkerProcess, free_port, gantry_env
    from devtools.standins.server import serve
    from devtools.standins.slack import FakeSlack
    from devtools.temporal import start_dev_server

    class FakeSlackProcess(ChildProcess):
        name = "fake slack"

        def __init__(self, env: dict[str, str], log_file: Path, port: int) -> None:
            super().__init__(log_file=log_file, env=env)
            self.port = port

        def command(self) -> list[str]:
            return [sys.executable, "-m", "bench.approvals", "fake-slack", str(self.port)]

        def ready(self) -> bool:
            return "Uvicorn running" in self.log_since_start()

    receiver = Receiver()
    receiver.loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as tmp, serve(receiver) as receiver_url:
        work = Path(tmp)
        slack_process = FakeSlackProcess(gantry_env(), work / "slack.log", free_port())
        slack_url = f"http://127.0.0.1:{slack_process.port}"
        await asyncio.to_thread(slack_process.start, 30.0)
        try:
            slack = AsyncWebClient(token=FakeSlack.token, base_url=f"{slack_url}/api/")
            async with start_dev_server() as temporal:
                port = free_port()
                env = stack_env(
                    work,
                    temporal.client.service_client.config.target_host,
                    port,
                    "gantry-bench-approvals",
                    slack_bot_token=FakeSlack.token,
                    slack_signing_secret=SIGNING_SECRET,
                    slack_api_url=f"{slack_url}/api/",
                )
                api_process = ApiProcess(env, work / "api.log", host="127.0.0.1", port=port)
                processes: list[ChildProcess] = [api_process, WorkerProcess(env, work / "worker.log")]
                try:
                    for process in processes:
                        await asyncio.to_thread(process.start, 60.0)
                    limits = httpx.Limits(max_connections=burst * 2 + 10)
                    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
                    async with httpx.AsyncClient(
                        base_url=api_process.url, headers=admin, timeout=60, limits=limits
                    ) as api:
                        bob = {"identifier": "bob", "email": "bob@example.com", "name": "Bob"}
                        (await api.post("/v1/users", json=bob)).raise_for_status()
                        token = (await api.post("/v1/tokens", json={"user": "bob"})).json()["token"]
                        (await api.post("/v1/actions", json=gated_action(receiver_url))).raise_for_status()
                        async with httpx.AsyncClient(
                            base_url=api_process.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
                        ) as bob_api:
                            return await measure(Bench(api, bob_api, receiver, slack), burst, rounds, samples)
                except Exception:
                    for process in processes:
                        print(f"{process.name}{process.tail(40)}", file=sys.stderr)
                    raise
                finally:
                    for process in reversed(processes):
                        process.stop(10)
        finally:
            slack_process.stop(10)


async def measure(b: Bench, burst: int, rounds: int, samples: int) -> tuple[list[list[str]], bool]:
    print("warm-up: 3 runs approved by click, 3 by API", flush=True)
    for _ in range(3):
        await b.continues_after(b.click)
        await b.continues_after(b.approve_by_api)

    idle_acks: list[float] = []
    for _ in range(rounds):  # clicks on runs that do not exist: the ack with little work behind it
        idle_acks += [
            a * 1000 for a in await asyncio.gather(*(b.click(f"r_none{i}", "x") for i in range(burst)))
        ]
        await asyncio.sleep(2)
    print(f"idle bursts: ack p99 {percentile(idle_acks, 99):.1f} ms", flush=True)

    acks: list[float] = []
    burst_steps: list[float] = []
    burst_runs: list[str] = []
    for round_no in range(rounds):
        round_acks, round_steps, run_ids = await b.burst(burst)
        acks += round_acks
        burst_steps += round_steps
        burst_runs += run_ids
        print(
            f"burst round {round_no + 1}: {burst} clicks, ack p99 {percentile(round_acks, 99):.1f} ms, "
            f"last step after {max(round_steps):.0f} ms",
            flush=True,
        )
    hits_ok = all(b.receiver.hits.get(f"{run_id}:notify") == 1 for run_id in burst_runs)
    statuses, no_buttons = await b.settled(burst_runs)

    by_click: list[float] = []
    by_api: list[float] = []
    print(f"decision → run continues: {samples} runs each, one at a time, alternating", flush=True)
    for _ in range(samples):
        by_click.append(await b.continues_after(b.click))
        by_api.append(await b.continues_after(b.approve_by_api))

    ack_p50, ack_p99 = statistics.median(acks), percentile(acks, 99)
    click_p50, click_p95 = statistics.median(by_click), percentile(by_click, 95)
    api_p50, api_p95 = statistics.median(by_api), percentile(by_api, 95)
    settled_ok = statuses == {"SUCCESS": len(burst_runs)} and hits_ok and no_buttons
    met = {
        "ack": ack_p99 < ACK_P99_TARGET_MS,
        "continue": click_p95 < CONTINUE_P95_TARGET_MS,
        "settled": settled_ok,
    }

    def check(ok: bool) -> str:
        return "✓ met" if ok else "✗ MISSED"

    rows = [
        ["measurement", "p50", "p95 / p99", "target"],
        [
            f"ack of a click, {burst} at once ({len(acks)} clicks)",
            f"{ack_p50:.1f} ms",
            f"p99 {ack_p99:.1f} ms",
            f"p99 < {ACK_P99_TARGET_MS:.0f} ms {check(met['ack'])}",
        ],
        [
            f"ack of a click, {burst} at once, on unknown runs ({len(idle_acks)})",
            f"{statistics.median(idle_acks):.1f} ms",
            f"p99 {percentile(idle_acks, 99):.1f} ms",
            "—",
        ],
        [
            f"click → next step, {burst} at once",
            f"{statistics.median(burst_steps):.0f} ms",
            f"p99 {percentile(burst_steps, 99):.0f} ms",
            "—",
        ],
        [
            "click → next step, one at a time",
            f"{click_p50:.1f} ms",
            f"p95 {click_p95:.1f} ms",
            f"p95 < {CONTINUE_P95_TARGET_MS:.0f} ms {check(met['continue'])}",
        ],
        [
            "baseline: POST /v1/runs/{id}/approval → next step",
            f"{api_p50:.1f} ms",
            f"p95 {api_p95:.1f} ms",
            "—",
        ],
        [
            "burst runs: SUCCESS, one step hit each, buttons gone",
            _statuses(statuses),
            f"hits {'ok' if hits_ok else 'WRONG'}, buttons {'gone' if no_buttons else 'LEFT'}",
            f"all {check(met['settled'])}",
        ],
    ]
    return rows, all(met.values())


def _statuses(statuses: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))


def serve_fake_slack(port: int) -> None:
    import uvicorn

    from devtools.standins.slack import FakeSlack

    uvicorn.run(FakeSlack().app, host="127.0.0.1", port=port, log_level="info", access_log=False)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "fake-slack":
        serve_fake_slack(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--burst", type=int, default=50, help="runs clicked at once per burst round")
    parser.add_argument("--rounds", type=int, default=3, help="burst rounds")
    parser.add_argument("--samples", type=int, default=20, help="runs decided one at a time, per path")
    args = parser.parse_args()
    rows, met = asyncio.run(bench(args.burst, args.rounds, args.samples))
    text = render(rows)
    print(text)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"Slack approval benchmark: {args.rounds} bursts of {args.burst} signed clicks, "
        f"{args.samples} sequential decisions per path, {os.cpu_count()} CPUs ({stamp})\n\n"
    )
    footer = (
        "\n\nThe API (one uvicorn process), the worker and a Temporal dev server on this machine; "
        "Slack is the fake Web API served in the benchmark process.\n"
    )
    write_results(RESULTS, header, text, footer)
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
