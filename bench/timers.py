"""TTL timer benchmark: what armed timers cost, and how late a burst of them fires.

``python -m bench.timers [--timers 10000] [--burst 1000] [--lead 30]``

On one Temporal dev server started here (the pip-installed binary), the real API (uvicorn
subprocess, SQLite file) and ``python worker.py``:

- **armed**: ``--timers`` entities bulk-written (``POST .../entities/bulk``, 1000 a request) with
  ``expires_at`` a week ahead, so each has a sleeping ``EntityTimer`` workflow. It notes the
  resident memory (``VmRSS`` from ``/proc``) of the worker and of the dev server before and after,
  once every event is relayed and the worker has gone quiet, and how fast timers were armed
  (first write → last event relayed);
- **burst**: ``--burst`` more entities whose timers all expire in the same second, ``--lead``
  seconds after their write (longer if arming as many took longer); the blueprint has no
  ``on_expiry`` action, so this times the timer itself: the lag between the deadline and the
  expiry the catalog records (``expired_at`` - ``deadline`` in ``GET /v1/timers``), p50 and p99
  (target p99 < 2 s), with all armed timers still asleep; where it goes (from a sample of the
  histories: the timer firing, the worker taking the workflow task, the report sent); and the CPU
  the worker, the dev server and the API spent meanwhile;
- **baseline**: as many bare Temporal timers (``bench/bare_timer.py``: sleep to the deadline, one
  local activity noting the clock), due in the same second on the same dev server with the same
  sleepers armed, run by a bare worker subprocess: the lag Temporal alone has on this machine.

It prints two tables and writes them as markdown to ``bench/results/timers.md``; the exit status is
1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from bench.actions import cpu_seconds, dev_server_pid, render
from bench.bare_timer import BARE_QUEUE, BARE_WORKFLOW, run_bare_worker
from bench.common import ADMIN_TOKEN, percentile, stack_env, write_results
from devtools.processes import ChildProcess

RESULTS = Path(__file__).parent / "results" / "timers.md"
BULK = 1000  # entities a bulk request carries at most
ARMED = "bench_sleeper"  # timers a week away
BURST = "bench_burst"  # timers due in the same second
LAG_P99_TARGET = 2.0  # seconds
QUIET = 0.05  # CPU seconds a second below which the worker counts as idle


class BareWorkerProcess(ChildProcess):
    name = "bare worker"

    def __init__(self, env: dict[str, str], log_file: Path, address: str) -> None:
        super().__init__(log_file=log_file, env=env)
        self.address = address

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.timers", "bare-worker", self.address]

    def ready(self) -> bool:
        return "bare worker polling" in self.log_since_start()


async def bare_burst(
    client: Any, burst: int, lead: float, pids: dict[str, int]
) -> tuple[list[float], dict[str, float]]:
    """``burst`` bare timers due in the same second: each one's lag (s), and the CPU seconds the
    processes in ``pids`` spent from just before the deadline until the last expiry."""
    deadline = time.time() + lead
    slots = asyncio.Semaphore(32)

    async def start(i: int) -> Any:
        async with slots:
            return await client.start_workflow(
                BARE_WORKFLOW, deadline, id=f"bare-{i:06d}-{int(deadline)}", task_queue=BARE_QUEUE
            )

    handles = await asyncio.gather(*(start(i) for i in range(burst)))
    print(f"  bare: {burst} started, due in {deadline - time.time():.1f}s", flush=True)
    await asyncio.sleep(max(0.0, deadline - time.time() - 1))
    cpu = cpu_seconds(pids)
    noted = await asyncio.gather(*(h.result() for h in handles))
    used = {name: spent - cpu[name] for name, spent in cpu_seconds(pids).items()}
    return sorted(n - deadline for n in noted), used


def blueprint(identifier: str) -> dict[str, Any]:
    return {
        "identifier": identifier,
        "title": identifier.replace("_", " ").capitalize(),
        "schema": {"properties": {"expires_at": {"type": "string", "format": "timer"}}},
        "timers": {"expires_at": {"max_ttl": "P14D"}},
    }


def rss_mib(pid: int) -> float:
    """Resident memory of a process in MiB (``VmRSS`` in ``/proc/{pid}/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def whole_ms(moment: datetime) -> datetime:
    """The catalog keeps milliseconds: a deadline compared later must not carry more."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


async def write_timers(api: httpx.AsyncClient, bp: str, prefix: str, count: int, deadline: datetime) -> None:
    expires_at = deadline.astimezone(UTC).isoformat()
    for start in range(0, count, BULK):
        entities = [
            {"identifier": f"{prefix}-{i:06d}", "properties": {"expires_at": expires_at}}
            for i in range(start, min(start + BULK, count))
        ]
        response = await api.post(f"/v1/blueprints/{bp}/entities/bulk", json={"entities": entities})
        response.raise_for_status()
        refused = [r for r in response.json()["results"] if r["status"] == "failed"]
        if refused:
            raise RuntimeError(f"{len(refused)} entities refused, e.g. {refused[0]}")


async def relayed(api: httpx.AsyncClient, timeout: float) -> None:
    """Wait until the outbox is empty: every timer's signal-with-start has gone to Temporal."""
    deadline = time.monotonic() + timeout
    while (await api.get("/v1/events", params={"delivered": "false", "limit": 1})).json()["items"]:
        if time.monotonic() > deadline:
            raise TimeoutError(f"events still undelivered after {timeout}s")
        await asyncio.sleep(0.2)


async def quiet(pid: int, timeout: float = 120) -> None:
    """Wait until the process uses less than ``QUIET`` CPU seconds in a second."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = cpu_seconds({"p": pid})["p"]
        await asyncio.sleep(1)
        if cpu_seconds({"p": pid})["p"] - before < QUIET:
            return


async def expired(api: httpx.AsyncClient, bp: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"blueprint": bp, "state": "expired", "limit": 1000}
    while True:
        page = (await api.get("/v1/timers", params=params)).json()
        items += page["items"]
        if not page["next_cursor"]:
            return items
        params["cursor"] = page["next_cursor"]


LATE = "armed late"  # sampled timers whose first workflow task came after the deadline
STAGES = (
    ("timer fired", "EVENT_TYPE_TIMER_FIRED"),
    ("workflow task started", "EVENT_TYPE_WORKFLOW_TASK_STARTED"),
    ("workflow task completed (report sent)", "EVENT_TYPE_WORKFLOW_TASK_COMPLETED"),
)


async def stage_lags(client: Any, records: list[dict[str, Any]], sample: int = 100) -> dict[str, list[float]]:
    """Where the lag goes, from a sample of the burst's histories: seconds from the deadline to
    each step of the expiry (the timer firing, the worker taking the workflow task, and
    completing it once the report, a local activity, is sent)."""
    from temporalio.api.enums.v1 import EventType

    step = max(1, len(records) // sample)
    lags: dict[str, list[float]] = {name: [] for name, _ in STAGES}
    for record in records[::step]:
        deadline = datetime.fromisoformat(record["deadline"])
        history = await client.get_workflow_handle(record["workflow_id"]).fetch_history()
        events = list(history.events)
        fired = next(
            (i for i, e in enumerate(events) if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED), None
        )
        if fired is None:  # its first workflow task came after the deadline: it never slept
            lags.setdefault(LATE, []).append(0.0)
            continue
        wanted = dict(STAGES)
        for event in events[fired:]:
            name = EventType.Name(event.event_type)
            for stage, kind in list(wanted.items()):
                if kind == name:
                    lags[stage].append((event.event_time.ToDatetime(UTC) - deadline).total_seconds())
                    del wanted[stage]
                    break
    return lags


async def bench(timers: int, burst: int, lead: float) -> tuple[list[list[str]], list[list[str]], bool]:
    from devtools.processes import ApiProcess, WorkerProcess, free_port
    from devtools.temporal import start_dev_server

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        async with start_dev_server() as temporal:
            address = temporal.client.service_client.config.target_host
            port = free_port()
            env = stack_env(
                work,
                address,
                port,
                "gantry-bench-timers",
            )
            api_process = ApiProcess(env, work / "api.log", host="127.0.0.1", port=port)
            worker = WorkerProcess(env, work / "worker.log")
            bare = BareWorkerProcess(env, work / "bare.log", address)
            processes: list[ChildProcess] = [api_process, worker, bare]
            try:
                for process in processes:
                    await asyncio.to_thread(process.start, 60.0)
                headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
                async with httpx.AsyncClient(base_url=api_process.url, headers=headers, timeout=120) as api:
                    pids = {
                        "worker": worker.pid,
                        "dev server": dev_server_pid(address.rsplit(":", 1)[1]),
                        "API": api_process.pid,
                        "bare worker": bare.pid,
                    }
                    return await measure(api, temporal.client, pids, timers, burst, lead)
            except Exception:
                for process in processes:
                    print(f"{process.name}{process.tail(40)}", file=sys.stderr)
                raise
            finally:
                for process in reversed(processes):
                    process.stop(10)


async def measure(
    api: httpx.AsyncClient, client: Any, pids: dict[str, int], timers: int, burst: int, lead: float
) -> tuple[list[list[str]], list[list[str]], bool]:
    worker, server = pids["worker"], pids["dev server"]
    ours = {name: pids[name] for name in ("worker", "dev server", "API")}
    for bp in (ARMED, BURST):
        (await api.post("/v1/blueprints", json=blueprint(bp))).raise_for_status()
    await quiet(worker)
    before = {"worker": rss_mib(worker), "temporal": rss_mib(server)}

    print(f"arming {timers} timers a week ahead", flush=True)
    started = time.perf_counter()
    await write_timers(api, ARMED, "sleeper", timers, whole_ms(datetime.now(UTC) + timedelta(days=7)))
    written = time.perf_counter() - started
    await relayed(api, timeout=600)
    arm_seconds = time.perf_counter() - started
    await quiet(worker)
    after = {"worker": rss_mib(worker), "temporal": rss_mib(server)}
    print(f"  written in {written:.1f}s, all relayed after {arm_seconds:.1f}s", flush=True)

    # The burst must be armed before it is due: at least twice what arming it should take.
    lead = max(lead, 2 * arm_seconds / timers * burst + 5)
    print(f"{burst} timers due in {lead:.0f}s, in the same second", flush=True)
    deadline = whole_ms(datetime.now(UTC) + timedelta(seconds=lead))
    await write_timers(api, BURST, "burst", burst, deadline)
    await relayed(api, timeout=lead + 60)
    armed_before = (deadline - datetime.now(UTC)).total_seconds()
    await asyncio.sleep(max(0.0, armed_before - 1))
    cpu = cpu_seconds(ours)
    records: list[dict[str, Any]] = []
    give_up = time.monotonic() + armed_before + 120
    while len(records) < burst and time.monotonic() < give_up:
        await asyncio.sleep(1)
        records = await expired(api, BURST)
    cpu = {name: spent - cpu[name] for name, spent in cpu_seconds(ours).items()}
    lags = sorted(
        (datetime.fromisoformat(t["expired_at"]) - datetime.fromisoformat(t["deadline"])).total_seconds()
        for t in records
    )
    print(f"  armed {armed_before:.1f}s before the deadline; {len(records)} expired", flush=True)
    if armed_before < 0:
        print("  WARNING: the burst was armed after its deadline: its lag includes arming", flush=True)
    stages = await stage_lags(client, records)
    print(f"{burst} bare Temporal timers due in the same second, on the same server", flush=True)
    bare, bare_cpu = await bare_burst(
        client, burst, lead, {n: pids[n] for n in ("bare worker", "dev server")}
    )
    return table(timers, burst, before, after, arm_seconds, lags, bare, stages, cpu, bare_cpu)


def table(
    timers: int,
    burst: int,
    before: dict[str, float],
    after: dict[str, float],
    arm_seconds: float,
    lags: list[float],
    bare: list[float],
    stages: dict[str, list[float]],
    cpu: dict[str, float],
    bare_cpu: dict[str, float],
) -> tuple[list[list[str]], list[list[str]], bool]:
    def check(ok: bool) -> str:
        return "✓ met" if ok else "✗ MISSED"

    def q(values: list[float], at: float) -> float:
        return percentile(values, at) if values else float("nan")

    p99 = q(lags, 99)
    all_fired = len(lags) == burst
    rows = [["measurement", "before", "after", "per 1,000 timers"]]
    for name, label in (("worker", "worker RSS"), ("temporal", "dev server RSS")):
        grown = after[name] - before[name]
        rows.append(
            [
                f"{label}, {timers:,} timers armed",
                f"{before[name]:.0f} MiB",
                f"{after[name]:.0f} MiB",
                f"+{grown / timers * 1000:.1f} MiB",
            ]
        )
    rows.append(
        ["arming (bulk write → relayed)", "—", f"{arm_seconds:.1f} s", f"{arm_seconds / timers * 1000:.2f} s"]
    )

    lag_rows = [
        ["expiry lag, 1,000 due in the same second", "Gantry", "bare Temporal timer", "ratio", "target"]
    ]
    for label, at in (("p50", 50.0), ("p99", 99.0), ("max", 100.0)):
        ours, base = (q(lags, at), q(bare, at)) if at < 100 else (max(lags, default=0), max(bare, default=0))
        target = f"< {LAG_P99_TARGET:.0f} s {check(ours < LAG_P99_TARGET)}" if label == "p99" else "—"
        lag_rows.append(
            [label, f"{ours:.2f} s", f"{base:.2f} s", f"{ours / base:.2f}x" if base else "—", target]
        )
    late = stages.pop(LATE, [])
    lag_rows += [
        [f"  deadline → {stage} (p50 / p99, sample)", f"{q(v, 50):.2f} / {q(v, 99):.2f} s", "—", "—", "—"]
        for stage, v in stages.items()
        if v
    ]
    if late:
        lag_rows.append(["  sampled timers first run after their deadline", f"{len(late)}", "—", "—", "—"])
    lag_rows.append(
        [
            "CPU from the deadline to the last expiry",
            " + ".join(f"{name} {spent:.1f}" for name, spent in cpu.items()) + " s",
            " + ".join(f"{name} {spent:.1f}" for name, spent in bare_cpu.items()) + " s",
            f"{sum(cpu.values()) / sum(bare_cpu.values()):.2f}x" if sum(bare_cpu.values()) else "—",
            "—",
        ]
    )
    lag_rows.append(
        [
            "expired",
            f"{len(lags):,} / {burst:,}",
            f"{len(bare):,} / {burst:,}",
            "—",
            f"all {check(all_fired)}",
        ]
    )
    return rows, lag_rows, p99 < LAG_P99_TARGET and all_fired


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "bare-worker":
        asyncio.run(run_bare_worker(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--timers", type=int, default=10_000, help="timers armed a week ahead")
    parser.add_argument("--burst", type=int, default=1000, help="timers due in the same second")
    parser.add_argument(
        "--lead", type=float, default=30.0, help="seconds from the burst's write to its deadline"
    )
    args = parser.parse_args()
    rows, lag_rows, met = asyncio.run(bench(args.timers, args.burst, args.lead))
    text = render(rows) + "\n\n" + render(lag_rows)
    print(text)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"TTL timer benchmark: {args.timers:,} timers armed, then {args.burst:,} due in the same second, "
        f"{os.cpu_count()} CPUs ({stamp})\n\n"
    )
    footer = (
        "\n\nRSS is VmRSS once the worker is idle. Expiry lag is the catalog's `expired_at` minus the "
        "deadline (the burst's blueprint has no on_expiry action: the timer alone is timed). The bare "
        "Temporal timer sleeps to the same kind of deadline and runs one local activity noting the "
        "clock, on the same dev server with the same sleepers armed, run by a bare worker subprocess.\n"
    )
    write_results(RESULTS, header, text, footer)
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()
