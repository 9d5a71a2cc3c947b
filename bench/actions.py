"""Action-run benchmark: a run launched through Gantry against a bare Temporal workflow.

``python -m bench.actions [--runs 500] [--samples 40]``

On one Temporal dev server started here (the pip-installed binary), with one local webhook
receiver (in this process, noting when each request arrives):

- **ours**: a one-step ``http.request`` action launched with ``POST /v1/actions/{action}/runs``
  on the real API (uvicorn subprocess on 127.0.0.1, SQLite file), run by ``python worker.py``;
- **baseline**: a bare workflow with one activity making the same signed POST to the same
  receiver, started directly with the Temporal client and run by a bare worker subprocess
  (``python -m bench.actions baseline-worker``).

It measures launch-to-first-step latency (launch call → the receiver sees the request), one run
at a time, p50 and p95; and throughput: ``--runs`` launched at once (at most ``LAUNCHERS`` launch
calls in flight), completed runs per second from the first launch to the last completion. Then
it checks nothing was lost or stuck: every run SUCCESS (for ours, the run records in the API),
and exactly one receiver hit per run. It prints one table and writes it as markdown to
``bench/results/actions.md``.

Then a **fan-out** measure (``--fan-out-only`` runs just this one): an action of
``FAN_OUT_BRANCHES`` ``http.request`` branches that all start at once (``needs: []``), each held by
the receiver for its own delay (the slowest ``SLOWEST_BRANCH_S``), and the same as one step with
``for_each`` over ten items. Each is timed launch → workflow result, the median of ``--fan-out-samples``,
next to a one-step run with no delay (the launch overhead of one run) and a one-step run held as
long as the slowest branch (that branch alone). Target: the fan-out ends within 1.3x the slowest
branch plus one run's overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow

from bench.common import ADMIN_TOKEN, stack_env, write_results

with workflow.unsafe.imports_passed_through():
    import httpx
    from temporalio.client import Client
    from temporalio.worker import Worker

RESULTS = Path(__file__).parent / "results" / "actions.md"
LAUNCHERS = 32  # launch calls in flight at once during the throughput phase
WEBHOOK_SECRET = "bench-webhook-secret"
BASELINE_WORKFLOW = "BenchBaselineRun"
KEY_HEADER = b"idempotency-key"
FAN_OUT_BRANCHES = 10
SLOWEST_BRANCH_S = 1.0
# The receiver holds a request to ``/hold/<ms>`` that many milliseconds before answering.
HOLD_PREFIX = "/hold/"


# ---- the baseline: one workflow, one activity, the same HTTP call ----------------------------


@activity.defn(name="bench.post_webhook")
async def post_webhook(url: str, key: str) -> int:
    """The same request ``http.request`` makes: a signed JSON POST with an Idempotency-Key."""
    from activities.http import sign

    body = b'{"bench":true}'
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": key,
        "X-Gantry-Timestamp": str(timestamp),
        "X-Gantry-Signature": sign(WEBHOOK_SECRET, timestamp, body),
    }
    response = await _baseline_http().post(url, content=body, headers=headers)
    response.raise_for_status()
    return response.status_code


_client: httpx.AsyncClient | None = None


def _baseline_http() -> httpx.AsyncClient:
    global _client
    if _client is None:
        _client = httpx.AsyncClient(timeout=30)
    return _client


@workflow.defn(name=BASELINE_WORKFLOW)
class BaselineRun:
    @workflow.run
    async def run(self, url: str, key: str) -> str:
        await workflow.execute_activity(
            post_webhook, args=[url, key], start_to_close_timeout=timedelta(minutes=10)
        )
        return "SUCCESS"


async def run_baseline_worker(address: str, task_queue: str) -> None:
    client = await Client.connect(address)
    async with Worker(client, task_queue=task_queue, workflows=[BaselineRun], activities=[post_webhook]):
        print(f"baseline worker polling task queue {task_queue!r}", flush=True)
        await asyncio.Event().wait()


# ---- the receiver ----------------------------------------------------------------------------


class Receiver:
    """A minimal ASGI webhook receiver noting (perf_counter) when each key first arrives."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.hits: dict[str, int] = {}
        self.waiters: dict[str, asyncio.Future[float]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        now = time.perf_counter()
        key = dict(scope["headers"]).get(KEY_HEADER, b"").decode()
        self.hits[key] = self.hits.get(key, 0) + 1
        self.arrived.setdefault(key, now)
        waiter = self.waiters.get(key)
        if waiter is not None and self.loop is not None:
            self.loop.call_soon_threadsafe(_resolve, waiter, now)
        path = str(scope.get("path", ""))
        if path.startswith(HOLD_PREFIX):  # a slow deploy system: the branch's own duration
            await asyncio.sleep(int(path.removeprefix(HOLD_PREFIX)) / 1000)
        more = True
        while more:  # drain the body
            more = (await receive()).get("more_body", False)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"received":true}'})

    def expect(self, key: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters[key] = future
        if key in self.arrived:
            _resolve(future, self.arrived[key])
        return future


def _resolve(future: asyncio.Future[float], value: float) -> None:
    if not future.done():
        future.set_result(value)


# ---- the two contenders ----------------------------------------------------------------------


@dataclass
class Contender:
    """How to launch one run (returns its key at the receiver, and an awaitable of its end)."""

    name: str
    launch: Callable[[str], Awaitable[tuple[str, Callable[[], Awaitable[str]]]]]
    verify: Callable[[list[str]], Awaitable[dict[str, int]]] = field(default=lambda keys: _none())


async def _none() -> dict[str, int]:
    return {}


def ours(api: httpx.AsyncClient, client: Client) -> Contender:
    async def launch(action: str) -> tuple[str, Callable[[], Awaitable[str]]]:
        response = await api.post(f"/v1/actions/{action}/runs", json={})
        if response.status_code != 202:
            raise RuntimeError(f"launch refused: {response.status_code} {response.text}")
        run = response.json()
        handle = client.get_workflow_handle(run["workflow_id"])

        async def ended() -> str:
            result = await handle.result()
            return str(result["status"])

        return f"{run['id']}:notify", ended

    async def verify(keys: list[str]) -> dict[str, int]:
        """Run records as the API shows them, by status."""
        statuses: dict[str, int] = {}
        for key in keys:
            run = (await api.get(f"/v1/runs/{key.split(':')[0]}")).json()
            statuses[run["status"]] = statuses.get(run["status"], 0) + 1
        return statuses

    return Contender("ours", launch, verify)


def baseline(client: Client, task_queue: str, url: str) -> Contender:
    async def launch(_: str) -> tuple[str, Callable[[], Awaitable[str]]]:
        key = f"b_{uuid.uuid4().hex[:24]}:notify"
        handle = await client.start_workflow(
            BASELINE_WORKFLOW, args=[url, key], id=f"bench:{key}", task_queue=task_queue
        )

        async def ended() -> str:
            return str(await handle.result())

        return key, ended

    return Contender("baseline", launch)


# ---- measurements ----------------------------------------------------------------------------


@dataclass
class Outcome:
    latencies_ms: list[float] = field(default_factory=list)
    per_second: float = 0.0
    runs: int = 0
    succeeded: int = 0
    hits_ok: bool = True
    statuses: dict[str, int] = field(default_factory=dict)
    # CPU seconds each process spent in its best throughput round.
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p95_ms(self) -> float:
        return statistics.quantiles(self.latencies_ms, n=20)[18]


async def one_latency(contender: Contender, receiver: Receiver, action: str) -> float:
    """Launch-to-first-step of one run, in ms; returns once the run has ended."""
    start = time.perf_counter()
    key, ended = await contender.launch(action)
    arrived = await asyncio.wait_for(receiver.expect(key), 60)
    await asyncio.wait_for(ended(), 60)
    return (arrived - start) * 1000


async def burst(contender: Contender, action: str, runs: int) -> tuple[float, list[str], list[str]]:
    """``runs`` launched at once; completed runs per second, each run's key and final status."""
    gate = asyncio.Semaphore(LAUNCHERS)

    launched: list[float] = []

    async def one() -> tuple[str, str]:
        async with gate:
            key, ended = await contender.launch(action)
        launched.append(time.perf_counter())
        return key, await ended()

    start = time.perf_counter()
    results = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(runs))), 600)
    elapsed = time.perf_counter() - start
    print(
        f"  {contender.name}: all launched after {max(launched) - start:.1f}s, all ended after {elapsed:.1f}s"
    )
    return runs / elapsed, [k for k, _ in results], [s for _, s in results]


async def compare(
    contenders: list[Contender],
    receiver: Receiver,
    samples: int,
    runs: int,
    rounds: int,
    pids: dict[str, int],
) -> list[Outcome]:
    """Latency samples and throughput rounds alternate between the contenders, so both see the
    same background load; the best throughput round of each counts."""
    outcomes = [Outcome(runs=runs) for _ in contenders]
    print(f"latency: {samples} runs each, one at a time, alternating", flush=True)
    for index in range(samples + 3):
        for contender, outcome in zip(contenders, outcomes, strict=True):
            measured = await one_latency(contender, receiver, "bench_latency")
            if index >= 3:  # warm-up: imports, connections, the sandbox's first module loads
                outcome.latencies_ms.append(measured)
    for round_no in range(rounds):
        for contender, outcome in zip(contenders, outcomes, strict=True):
            before = cpu_seconds(pids)
            per_second, keys, statuses = await burst(contender, "bench_burst", runs)
            used = {name: cpu_seconds(pids)[name] - before[name] for name in pids}
            print(f"throughput round {round_no + 1}: {contender.name} {per_second:.1f} runs/s", flush=True)
            outcome.succeeded = min(outcome.succeeded or runs, sum(1 for s in statuses if s == "SUCCESS"))
            outcome.hits_ok = outcome.hits_ok and all(receiver.hits.get(k) == 1 for k in keys)
            recorded = await contender.verify(keys)
            for status, count in recorded.items():
                outcome.statuses[status] = outcome.statuses.get(status, 0) + count
            if per_second > outcome.per_second:
                outcome.per_second, outcome.cpu = per_second, used
    return outcomes


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds of each process so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            used[name] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            used[name] = 0.0
    return used


def dev_server_pid(port: str) -> int:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"start-dev" in args and port.encode() in args:
            return int(cmdline.parent.name)
    return 0


# ---- the stack -------------------------------------------------------------------------------


# ---- fan-out: parallel branches against the slowest branch alone -----------------------------


def branch_delays_ms() -> list[int]:
    """Each branch's hold: evenly spread up to the slowest."""
    slowest = int(SLOWEST_BRANCH_S * 1000)
    return [slowest - 50 * i for i in range(FAN_OUT_BRANCHES)]


def fan_out_actions(receiver_url: str) -> list[dict[str, Any]]:
    """The four actions the fan-out measure launches."""

    def one_step(identifier: str, hold_ms: int) -> dict[str, Any]:
        return {
            "identifier": identifier,
            "title": identifier.replace("_", " ").capitalize(),
            "trigger": {"operation": "CREATE"},
            "steps": [
                {
                    "id": "notify",
                    "uses": "http.request",
                    "with": {"url": f"{receiver_url}{HOLD_PREFIX}{hold_ms}"},
                }
            ],
        }

    branches = {
        "identifier": "bench_branches",
        "title": "Bench branches",
        "trigger": {"operation": "CREATE"},
        "steps": [
            {
                "id": f"branch_{i}",
                "uses": "http.request",
                "needs": [],
                "with": {"url": f"{receiver_url}{HOLD_PREFIX}{hold}"},
            }
            for i, hold in enumerate(branch_delays_ms())
        ],
    }
    items = {
        "identifier": "bench_for_each",
        "title": "Bench for each",
        "trigger": {"operation": "CREATE"},
        "user_inputs": {"properties": {"holds": {"type": "array", "default": branch_delays_ms()}}},
        "steps": [
            {
                "id": "deploy",
                "uses": "http.request",
                "for_each": "{{ inputs.holds }}",
                "max_parallel": FAN_OUT_BRANCHES,
                "with": {"url": f"{receiver_url}{HOLD_PREFIX}{{{{ item }}}}"},
            }
        ],
    }
    return [
        one_step("bench_overhead", 0),
        one_step("bench_slowest_alone", int(SLOWEST_BRANCH_S * 1000)),
        branches,
        items,
    ]


async def run_seconds(api: httpx.AsyncClient, client: Client, action: str) -> float:
    """Launch → the workflow's result, in seconds; the run must succeed."""
    start = time.perf_counter()
    response = await api.post(f"/v1/actions/{action}/runs", json={})
    if response.status_code != 202:
        raise RuntimeError(f"launch refused: {response.status_code} {response.text}")
    result = await client.get_workflow_handle(response.json()["workflow_id"]).result()
    if result["status"] != "SUCCESS":
        raise RuntimeError(f"{action} ended {result}")
    return time.perf_counter() - start


async def fan_out(api: httpx.AsyncClient, client: Client, receiver_url: str, samples: int) -> list[list[str]]:
    """Medians of ``samples`` runs of each action, alternating (after one warm-up round)."""
    for definition in fan_out_actions(receiver_url):
        (await api.post("/v1/actions", json=definition)).raise_for_status()
    names = ["bench_overhead", "bench_slowest_alone", "bench_branches", "bench_for_each"]
    seconds: dict[str, list[float]] = {name: [] for name in names}
    print(f"fan-out: {samples} runs of each, one at a time, alternating", flush=True)
    for index in range(samples + 1):
        for name in names:
            measured = await run_seconds(api, client, name)
            if index:
                seconds[name].append(measured)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    overhead, alone = median["bench_overhead"], median["bench_slowest_alone"]
    budget = 1.3 * SLOWEST_BRANCH_S + overhead

    def row(label: str, name: str) -> list[str]:
        ok = median[name] <= budget
        return [
            label,
            f"{median[name] * 1000:.0f} ms",
            f"{alone * 1000:.0f} ms",
            f"{median[name] / alone:.2f}x",
            f"≤ {budget * 1000:.0f} ms (1.3 x {SLOWEST_BRANCH_S:.1f} s + overhead) {'✓ met' if ok else '✗ MISSED'}",
        ]

    return [
        ["fan-out (median)", "ours", "slowest branch alone", "ratio", "target"],
        ["one-step run, no hold (launch overhead)", f"{overhead * 1000:.0f} ms", "—", "—", "—"],
        row(f"{FAN_OUT_BRANCHES} branches, needs: []", "bench_branches"),
        row(f"for_each over {FAN_OUT_BRANCHES} items, max_parallel {FAN_OUT_BRANCHES}", "bench_for_each"),
    ]


def action(identifier: str, receiver_url: str) -> dict[str, Any]:
    return {
        "identifier": identifier,
        "title": identifier.replace("_", " ").capitalize(),
        "trigger": {"operation": "CREATE"},
        "steps": [
            {
                "id": "notify",
                "uses": "http.request",
                "with": {"url": f"{receiver_url}/hook", "body": {"bench": True}},
            }
        ],
    }


async def bench(
    runs: int, samples: int, rounds: int, fan_out_samples: int, *, fan_out_only: bool = False
) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    from devtools.processes import ApiProcess, ChildProcess, WorkerProcess, free_port
    from devtools.standins.server import serve
    from devtools.temporal import start_dev_server

    class BaselineWorkerProcess(ChildProcess):
        name = "baseline worker"

        def __init__(self, env: dict[str, str], log_file: Path, address: str, task_queue: str) -> None:
            super().__init__(log_file=log_file, env=env)
            self.address, self.task_queue = address, task_queue

        def command(self) -> list[str]:
            return [sys.executable, "-m", "bench.actions", "baseline-worker", self.address, self.task_queue]

        def ready(self) -> bool:
            return "baseline worker polling" in self.log_since_start()

    receiver = Receiver()
    receiver.loop = asyncio.get_running_loop()
    with tempfile.TemporaryDirectory() as tmp, serve(receiver) as receiver_url:
        work = Path(tmp)
        async with start_dev_server() as temporal:
            address = temporal.client.service_client.config.target_host
            port = free_port()
            env = stack_env(
                work,
                address,
                port,
                "gantry-bench",
                webhook_secret=WEBHOOK_SECRET,
            )
            api_process = ApiProcess(env, work / "api.log", host="127.0.0.1", port=port)
            processes: list[ChildProcess] = [
                api_process,
                WorkerProcess(env, work / "worker.log"),
                BaselineWorkerProcess(env, work / "baseline.log", address, "bench-baseline"),
            ]
            try:
                for process in processes:
                    await asyncio.to_thread(process.start, 60.0)
                headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
                limits = httpx.Limits(max_connections=LAUNCHERS * 2)
                async with httpx.AsyncClient(
                    base_url=api_process.url, headers=headers, timeout=60, limits=limits
                ) as api:
                    for name in ("bench_latency", "bench_burst"):
                        response = await api.post("/v1/actions", json=action(name, receiver_url))
                        response.raise_for_status()
                    pids = {
                        "api": api_process.pid,
                        "worker": processes[1].pid,
                        "baseline worker": processes[2].pid,
                        "temporal": dev_server_pid(address.rsplit(":", 1)[1]),
                        "bench": os.getpid(),
                    }
                    fan_out_rows = await fan_out(api, temporal.client, receiver_url, fan_out_samples)
                    if fan_out_only:
                        return [], [], fan_out_rows
                    contenders = [
                        ours(api, temporal.client),
                        baseline(temporal.client, "bench-baseline", f"{receiver_url}/hook"),
                    ]
                    ours_outcome, base_outcome = await compare(
                        contenders, receiver, samples, runs, rounds, pids
                    )
            except Exception:
                for process in processes:
                    print(f"{process.name}{process.tail(40)}", file=sys.stderr)
                raise
            finally:
                for process in reversed(processes):
                    process.stop(10)
    return table(ours_outcome, base_outcome, runs), cpu_table(ours_outcome, base_outcome, runs), fan_out_rows


def table(ours: Outcome, base: Outcome, runs: int) -> list[list[str]]:
    def check(ok: bool) -> str:
        return "✓ met" if ok else "✗ MISSED"

    p50_ratio = ours.p50_ms / base.p50_ms
    p95_ratio = ours.p95_ms / base.p95_ms
    tput_ratio = ours.per_second / base.per_second
    lost_ours = runs - ours.succeeded
    lost_base = runs - base.succeeded
    records_ok = set(ours.statuses) == {"SUCCESS"}
    return [
        ["measurement", "ours", "baseline", "ratio", "target"],
        [
            "launch → first step p50",
            f"{ours.p50_ms:.1f} ms",
            f"{base.p50_ms:.1f} ms",
            f"{p50_ratio:.2f}x",
            f"≤ 1.5x {check(p50_ratio <= 1.5)}",
        ],
        [
            "launch → first step p95",
            f"{ours.p95_ms:.1f} ms",
            f"{base.p95_ms:.1f} ms",
            f"{p95_ratio:.2f}x",
            "—",
        ],
        [
            f"throughput, {runs} at once",
            f"{ours.per_second:.1f} runs/s",
            f"{base.per_second:.1f} runs/s",
            f"{tput_ratio:.2f}x",
            f"≥ 0.7x {check(tput_ratio >= 0.7)}",
        ],
        [
            "lost or stuck runs",
            f"{lost_ours} (records: {_statuses(ours.statuses)})",
            f"{lost_base}",
            "—",
            f"0 {check(lost_ours == 0 and lost_base == 0 and records_ok)}",
        ],
        [
            "receiver hits = runs, one each",
            "yes" if ours.hits_ok else "NO",
            "yes" if base.hits_ok else "NO",
            "—",
            f"{check(ours.hits_ok and base.hits_ok)}",
        ],
    ]


def cpu_table(ours: Outcome, base: Outcome, runs: int) -> list[list[str]]:
    """CPU milliseconds per run, by process, in each contender's best throughput round."""
    rows = [["CPU ms per run", "ours", "baseline"]]
    for name in ours.cpu:
        rows.append([name, f"{ours.cpu[name] / runs * 1000:.1f}", f"{base.cpu[name] / runs * 1000:.1f}"])
    return rows


def _statuses(statuses: dict[str, int]) -> str:
    return ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))


def render(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |" for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "baseline-worker":
        asyncio.run(run_baseline_worker(sys.argv[2], sys.argv[3]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=500, help="runs launched at once for throughput")
    parser.add_argument("--samples", type=int, default=40, help="runs measured one at a time for latency")
    parser.add_argument("--rounds", type=int, default=2, help="throughput rounds each (the best counts)")
    parser.add_argument("--fan-out-samples", type=int, default=5, help="runs of each fan-out action")
    parser.add_argument("--fan-out-only", action="store_true", help="measure the fan-out only (not written)")
    args = parser.parse_args()
    rows, cpu, fanned = asyncio.run(
        bench(args.runs, args.samples, args.rounds, args.fan_out_samples, fan_out_only=args.fan_out_only)
    )
    if args.fan_out_only:
        print(render(fanned))
        return
    text = render(rows) + "\n\n" + render(cpu) + "\n\n" + render(fanned)
    print(text)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"Action-run benchmark: one-step http.request, {args.runs} concurrent runs, "
        f"{args.samples} latency samples, best of {args.rounds} throughput rounds, {os.cpu_count()} CPUs ({stamp})\n\n"
    )
    footer = (
        "\n\nBaseline: a bare workflow with one activity making the same signed POST, started "
        "directly with the Temporal client, on the same dev server and receiver.\n"
    )
    write_results(RESULTS, header, text, footer)


if __name__ == "__main__":
    main()
