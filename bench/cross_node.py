#!/usr/bin/env python3
"""Cross-node latency: what the hop between two nodes adds to an event's delivery.

Starts two ``realtime serve`` nodes (``scripts/cluster.py``, no nginx) on one Redis (a key
prefix of this run's own) and one new PostgreSQL database, and the fake OpenAI server
(``realtime.testing.fake_openai``, every answer ``--tokens`` word tokens paced by
``--delay``), all as subprocesses on loopback. Then two pairs of clients, in this process:

- ``cross``: a visitor on node A, and the same session following the conversation from node B;
- ``same``: a visitor on node A, and the same session following it from node A too (the
  baseline: the same two sockets, no node in between);
- ``memory``: the same as ``same`` on a third node that has no Redis (the in-process broker,
  its own database): what the Redis round trip costs every client, local or not.

Each pair warms its conversation up with one message (so the follower subscribes to a
conversation that exists, and every measured event reaches both clients live), then the
visitor asks ``--rounds`` questions, the two modes taking turns. Every ``run.token`` frame is
timestamped on arrival at both clients (one clock, this process's ``perf_counter``); the
figure is, per token, arrival at the follower minus arrival at the visitor. ``cross - same``
is what crossing nodes adds. Each frame's age (wall clock at arrival minus its ``ts``, which
the server stamps, in whole milliseconds, when it makes the event) compares the brokers:
``same - memory`` is the Redis round trip. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.cluster import (  # noqa: E402 - after the path
    Cluster,
    create_database,
    drop_database,
)

MODES = ("cross", "same", "memory")
TERMINAL = ("run.completed", "run.failed", "run.cancelled")
ADMIN_URL = os.environ.get(
    "REALTIME_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


# --------------------------------------------------------------------------- processes


def start_fake(tmp: Path, tokens: int, delay: float) -> tuple[subprocess.Popen[bytes], str]:
    log_path = tmp / "fake-openai.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the child keeps it; closed with the process
    argv = [sys.executable, "-m", "realtime.testing.fake_openai", "--port", "0"]
    argv += ["--tokens", str(tokens), "--delay", str(delay)]
    proc = subprocess.Popen(
        argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("listening on "):
                return proc, line.removeprefix("listening on ").strip()
        time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError(f"the fake OpenAI server did not start:\n{log_path.read_text()}")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)


def delete_redis_keys(url: str, prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


# --------------------------------------------------------------------------- clients


class Peer:
    """A WebSocket client that timestamps every frame as it arrives."""

    def __init__(self, name: str, ws: ClientConnection) -> None:
        self.name = name
        self.ws = ws
        self.node = ""  # from its welcome
        self.frames: asyncio.Queue[tuple[int, float, dict[str, Any]]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read(), name=f"read-{name}")

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                arrived, wall = time.perf_counter_ns(), time.time()
                await self.frames.put((arrived, wall, orjson.loads(raw)))

    async def send(self, **frame: Any) -> None:
        await self.ws.send(orjson.dumps(frame).decode())

    async def next(self, wait: float) -> tuple[int, float, dict[str, Any]]:
        item = await asyncio.wait_for(self.frames.get(), wait)
        if item[2]["type"] == "error":
            raise RuntimeError(f"{self.name}: {item[2]}")
        return item

    async def until(self, wait: float, *types: str) -> list[tuple[int, float, dict[str, Any]]]:
        got = []
        while True:
            item = await self.next(wait)
            got.append(item)
            if item[2]["type"] in types:
                return got

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(Exception):
            await self.ws.close()


@contextlib.asynccontextmanager
async def peer(name: str, url: str) -> AsyncIterator[Peer]:
    async with connect(url, open_timeout=10, max_queue=None, compression=None) as ws:
        p = Peer(name, ws)
        try:
            yield p
        finally:
            await p.close()


@dataclass
class Pair:
    mode: str
    visitor: Peer
    follower: Peer
    conversation_id: str = ""
    deltas_ms: list[float] = field(default_factory=list)  # follower - visitor, per token
    age_visitor_ms: list[float] = field(default_factory=list)  # arrival - event ts
    age_follower_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def hello(pair: Pair, session: str, wait: float) -> None:
    for p in (pair.visitor, pair.follower):
        await p.send(type="hello", id="h", bot="demo", session_id=session)
        welcome = (await p.until(wait, "welcome"))[-1][2]
        p.node = welcome["server"]["node"]


async def warm_up(pair: Pair, wait: float) -> None:
    await pair.visitor.send(type="message.send", id="warm", content="Warm up, please.")
    frames = await pair.visitor.until(wait, *TERMINAL)
    ack = next(f for _, _, f in frames if f["type"] == "ack")
    pair.conversation_id = ack["conversation_id"]
    if frames[-1][2]["type"] != "run.completed":
        raise RuntimeError(f"{pair.mode}: the warm-up run ended with {frames[-1][2]}")
    await pair.follower.send(type="subscribe", id="s", conversation_id=pair.conversation_id)
    await pair.follower.until(wait, "ack")


async def measure(pair: Pair, round_no: int, wait: float) -> int:
    """One question; returns the number of tokens matched at both clients."""
    await pair.visitor.send(
        type="message.send",
        id=f"m{round_no}",
        content=f"Question {round_no}: how do I resume?",
        conversation_id=pair.conversation_id,
    )
    at_visitor, at_follower = await asyncio.gather(
        pair.visitor.until(wait, *TERMINAL), pair.follower.until(wait, *TERMINAL)
    )

    def tokens(frames: list[tuple[int, float, dict[str, Any]]]) -> dict[int, tuple[int, float]]:
        return {
            f["seq"]: (t, wall - f["ts"] / 1000)
            for t, wall, f in frames
            if f["type"] == "run.token"
        }

    def text(frames: list[tuple[int, float, dict[str, Any]]]) -> str:
        return "".join(f["delta"] for _, _, f in frames if f["type"] == "run.token")

    for who, frames in (("visitor", at_visitor), ("follower", at_follower)):
        if frames[-1][2]["type"] != "run.completed":
            pair.errors.append(f"round {round_no}: {who} got {frames[-1][2]}")
    if text(at_visitor) != text(at_follower):
        pair.errors.append(f"round {round_no}: the two clients saw different texts")
    v, f = tokens(at_visitor), tokens(at_follower)
    common = sorted(set(v) & set(f))
    for seq in common:
        pair.deltas_ms.append((f[seq][0] - v[seq][0]) / 1e6)
        pair.age_visitor_ms.append(v[seq][1] * 1000)
        pair.age_follower_ms.append(f[seq][1] * 1000)
    return len(common)


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


async def run_bench(cluster: Cluster, memory: Cluster, args: argparse.Namespace) -> dict[str, Any]:
    wait = args.frame_timeout
    a, b, m = cluster.node_ws_url(1), cluster.node_ws_url(2), memory.node_ws_url(1)
    tag = secrets.token_hex(3)
    async with (
        peer("cross-visitor", a) as cv,
        peer("cross-follower", b) as cf,
        peer("same-visitor", a) as sv,
        peer("same-follower", a) as sf,
        peer("memory-visitor", m) as mv,
        peer("memory-follower", m) as mf,
    ):
        pairs = {
            "cross": Pair("cross", cv, cf),
            "same": Pair("same", sv, sf),
            "memory": Pair("memory", mv, mf),
        }
        for mode, pair in pairs.items():  # every socket says hello at once (10 s limit)
            await hello(pair, f"bench-{tag}-{mode}", wait)
        for pair in pairs.values():
            await warm_up(pair, wait)
        if cf.node == cv.node or sf.node != sv.node or mf.node != mv.node:
            raise RuntimeError("the clients are not on the nodes they should be")
        for r in range(1, args.rounds + 1):
            shift = (r - 1) % len(MODES)
            order = MODES[shift:] + MODES[:shift]  # take turns going first
            for mode in order:
                n = await measure(pairs[mode], r, wait)
                if args.verbose:
                    d = pairs[mode].deltas_ms[-n:] if n else []
                    print(
                        f"  round {r} {mode:5}: {n} tokens, "
                        f"p50 {pct(d, 50):.3f} ms, p99 {pct(d, 99):.3f} ms",
                        flush=True,
                    )
    return {
        mode: {
            "events": len(p.deltas_ms),
            "p50_ms": pct(p.deltas_ms, 50),
            "p99_ms": pct(p.deltas_ms, 99),
            "mean_ms": _mean(p.deltas_ms),
            "max_ms": max(p.deltas_ms, default=float("nan")),
            "age_visitor_mean_ms": _mean(p.age_visitor_ms),
            "age_follower_mean_ms": _mean(p.age_follower_ms),
            "errors": p.errors,
            "deltas_ms": p.deltas_ms,
        }
        for mode, p in pairs.items()
    }


def report(results: dict[str, Any], args: argparse.Namespace, elapsed: float) -> None:
    print(
        f"\n{args.tokens} tokens per answer at {args.delay * 1000:g} ms/token, "
        f"{args.rounds} answers per mode ({elapsed:.1f} s)"
    )
    print("delta: arrival at the follower - arrival at the visitor, per run.token frame")
    print("age: arrival (wall clock) - the event's ts; ts is whole ms, so ages carry +0.5 ms")
    header = f"{'mode':<7} {'visitor/follower':<18} {'events':>7} {'delta p50':>10} "
    header += f"{'p99':>7} {'mean':>7} {'max':>7}   {'age mean v/f ms':>15} {'errors':>7}"
    print(header)
    print("-" * len(header))
    where = {"cross": "A(redis) / B", "same": "A(redis) / A", "memory": "M(memory) / M"}
    for mode in MODES:
        r = results[mode]
        print(
            f"{mode:<7} {where[mode]:<18} {r['events']:>7} {r['p50_ms']:>10.3f} "
            f"{r['p99_ms']:>7.3f} {r['mean_ms']:>7.3f} {r['max_ms']:>7.2f}   "
            f"{r['age_visitor_mean_ms']:>7.2f}/{r['age_follower_mean_ms']:<7.2f} "
            f"{len(r['errors']):>7}"
        )
    c, s, m = results["cross"], results["same"], results["memory"]
    print(
        f"\ncross - same (what crossing nodes adds): delta p50 {c['p50_ms'] - s['p50_ms']:+.3f} "
        f"ms, p99 {c['p99_ms'] - s['p99_ms']:+.3f} ms"
    )
    print(
        "same - memory (the Redis round trip, paid by every client): age mean "
        f"{s['age_visitor_mean_ms'] - m['age_visitor_mean_ms']:+.2f} ms"
    )
    for mode in MODES:
        for error in results[mode]["errors"]:
            print(f"error ({mode}): {error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=500, help="tokens per answer (500)")
    parser.add_argument("--delay", type=float, default=0.004, help="seconds between tokens (0.004)")
    parser.add_argument("--rounds", type=int, default=3, help="answers per mode (3)")
    parser.add_argument("--quick", action="store_true", help="200 tokens, 2 rounds")
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="the whole measurement, seconds (300)"
    )
    parser.add_argument(
        "--frame-timeout", type=float, default=30.0, help="longest wait for one frame (30)"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--postgres-url", default=ADMIN_URL, help="a PostgreSQL server to make a database on"
    )
    parser.add_argument("--json", help="write the figures (and every delta) here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every round")
    args = parser.parse_args(argv)
    if args.quick:
        args.tokens, args.rounds = min(args.tokens, 200), min(args.rounds, 2)
    if args.tokens < 1 or args.rounds < 1:
        parser.error("--tokens and --rounds must be at least 1")

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    tmp = Path(tempfile.mkdtemp(prefix="rt-cross-node-"))
    prefix = f"rt-bench-{secrets.token_hex(4)}:"
    base = args.postgres_url.rsplit("/", 1)[0]
    run_id = f"{os.getpid()}_{secrets.token_hex(3)}"
    databases = [f"{base}/realtime_bench_{run_id}", f"{base}/realtime_bench_{run_id}_memory"]
    created: list[str] = []
    clusters: list[Cluster] = []
    fake: subprocess.Popen[bytes] | None = None
    failed = True
    started = time.monotonic()
    try:
        fake, fake_url = start_fake(tmp, args.tokens, args.delay)
        env = {
            "REALTIME_PROVIDER": "openai",
            "OPENAI_BASE_URL": fake_url,
            "OPENAI_API_KEY": "sk-bench",
            "REALTIME_LLM_MAX_RETRIES": "0",
            "REALTIME_MESSAGES_PER_MINUTE": "100000",
            "REALTIME_LOG_LEVEL": "warning",
        }
        for url in databases:
            create_database(url)
            created.append(url)
        admin_key = "rta_bench_" + secrets.token_hex(8)
        on_redis = Cluster(
            tmp / "redis-nodes",
            nodes=2,
            nginx=False,
            database_url=databases[0],
            redis_url=args.redis_url,
            redis_prefix=prefix,
            admin_key=admin_key,
            env=env,
        )
        in_memory = Cluster(  # no Redis: the in-process broker (and its own database)
            tmp / "memory-node",
            nodes=1,
            nginx=False,
            database_url=databases[1],
            redis_url="",
            admin_key=admin_key,
            env={**env, "REALTIME_NODE_ID": "memory-1"},
        )
        for cluster in (on_redis, in_memory):
            clusters.append(cluster)
            cluster.start()
        print(
            f"nodes: A {on_redis.node_url(1)}, B {on_redis.node_url(2)} (redis prefix "
            f"{prefix}), M {in_memory.node_url(1)} (in-process broker); fake model {fake_url}",
            flush=True,
        )
        measured = time.monotonic()
        results = asyncio.run(asyncio.wait_for(run_bench(on_redis, in_memory, args), args.timeout))
        report(results, args, time.monotonic() - measured)
        if args.json:
            payload = {"args": vars(args), "results": results}
            Path(args.json).write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2))
        failed = any(results[m]["errors"] for m in MODES) or any(
            results[m]["events"] == 0 for m in MODES
        )
    except (Exception, KeyboardInterrupt) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        for cluster in clusters:
            for node in cluster.nodes:
                tail = "\n".join(node.log.read_text(errors="replace").splitlines()[-20:])
                print(f"--- {cluster.dir.name} {node.id} log:\n{tail}", file=sys.stderr)
    finally:
        for cluster in clusters:
            cluster.stop()
        if fake is not None:
            stop_process(fake)
        for url in created:
            with contextlib.suppress(Exception):
                drop_database(url)
        with contextlib.suppress(Exception):
            delete_redis_keys(args.redis_url, prefix)
        if args.keep or failed:
            print(f"logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"total {time.monotonic() - started:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
