#!/usr/bin/env python3
"""WebSocket relay benchmark: many clients, one message each, tokens relayed from a fake model.

Starts the fake OpenAI server (realtime.testing.fake_openai) and the server under test
(the realtime server, the hand-written Starlette baseline in bench/baseline_starlette.py,
or both) as subprocesses on free loopback ports. The server under test is pinned to the
first CPU, the fake model and this load generator to the second (when there are two).

For each configuration (pacing x clients), C clients open a WebSocket to /ws, send
``hello`` and wait for ``welcome``; then all are released at once and each sends one
``message.send`` and reads frames until ``run.completed`` / ``run.failed``. Every figure is
the median over --repeat runs; targets are interleaved run by run so that their ratios are
measured under the same conditions. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
QUESTION = "How do I resume after a disconnect?"
TARGETS = ("realtime", "baseline")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_plan() -> tuple[int | None, int | None]:
    """(server CPU, load CPU): the first two CPUs this process may use, if there are two."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None, None
    if len(cpus) < 2:
        return None, None
    return cpus[0], cpus[1]


class Proc:
    """A subprocess in its own process group, its output in a log file."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log: Path, cpu: int | None
    ) -> None:
        pin = None
        if cpu is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", str(cpu), *argv]  # taskset execs: the pid is the server's
        elif cpu is not None:

            def pin() -> None:  # no taskset: pin the child before it execs
                os.sched_setaffinity(0, {cpu})

        self.name = name
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv,
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=pin,
        )
        self.pid = self.popen.pid
        self.url = ""  # the WebSocket URL, for servers under test
        self._log_seen = 0
        self._stopped = False

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu_seconds(self) -> float:
        """utime + stime of the process (all its threads), from /proc/<pid>/stat."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return math.nan
        fields = stat[stat.rindex(")") + 2 :].split()  # fields from the 3rd (state) on
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return math.nan

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def new_log_lines(self) -> list[str]:
        """Lines the process wrote since the last call (servers log warnings and errors)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_seen)
                data = f.read()
        except OSError:
            return []
        self._log_seen += len(data)
        return data.decode(errors="replace").splitlines()

    def stop(self, grace: float = 20.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.alive():
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.popen.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        else:
            # the leader is gone; take down anything left in its group
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._log.close()


def wait_ready(proc: Proc, url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} not ready after {timeout}s ({last}):\n{proc.tail()}")


def start_fake(tmp: Path, tokens: int, delay: float, cpu: int | None) -> tuple[Proc, str]:
    log = tmp / f"fake-{delay:g}.log"
    argv = [sys.executable, "-m", "realtime.testing.fake_openai", "--port", "0"]
    argv += ["--tokens", str(tokens), "--delay", str(delay)]
    proc = Proc(f"fake OpenAI (delay {delay:g})", argv, dict(os.environ), log, cpu)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("listening on "):
                return proc, line.removeprefix("listening on ").strip()
        if not proc.alive():
            break
        time.sleep(0.05)
    proc.stop()
    raise RuntimeError(f"the fake OpenAI server did not start:\n{proc.tail()}")


def clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REALTIME_", "OPENAI_", "BASELINE_"))
    }


def start_target(target: str, tmp: Path, fake_url: str, tag: str, cpu: int | None) -> Proc:
    port = free_port()
    env = clean_env()
    env.update(OPENAI_BASE_URL=fake_url, OPENAI_API_KEY="sk-bench")
    log = tmp / f"{target}-{tag}.log"
    if target == "realtime":
        db = tmp / f"rt-{tag}.db"
        env.update(
            REALTIME_DATABASE_URL=f"sqlite:///{db}",
            REALTIME_PROVIDER="openai",
            REALTIME_ADMIN_KEY=secrets.token_hex(16),
            REALTIME_MESSAGES_PER_MINUTE="100000",
            REALTIME_LOG_LEVEL="warning",
        )
        argv = [sys.executable, "-m", "realtime", "serve", "--port", str(port)]
    else:
        argv = [sys.executable, str(BENCH_DIR / "baseline_starlette.py"), "--port", str(port)]
    proc = Proc(target, argv, env, log, cpu)
    proc.url = f"ws://127.0.0.1:{port}/ws"
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}/ready")
    except BaseException:
        proc.stop()
        raise
    return proc


# --------------------------------------------------------------------------- load


@dataclass
class Client:
    ws: ClientConnection | None = None
    ok: bool = False
    error: str | None = None
    detail: str | None = None
    t_send: float = 0.0
    t_end: float = 0.0
    ttft: float | None = None
    token_frames: int = 0
    gaps: list[float] = field(default_factory=list)


class ConnectFailed(Exception):
    pass


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def closed_detail(exc: ConnectionClosed) -> str:
    rcvd, sent = exc.rcvd, exc.sent
    code = rcvd.code if rcvd else (sent.code if sent else None)
    reason = rcvd.reason if rcvd else (sent.reason if sent else "")
    side = "server" if rcvd else ("client" if sent else "no close frame")
    return f"close {code} ({side}) {reason!r}"


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_config(
    server: Proc, fake: Proc, clients: int, tokens: int, limit: float, connect_concurrency: int
) -> dict[str, Any]:
    """One configuration: connect, hello, release, relay; returns the figures."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    expected = " ".join(f"tok{i}" for i in range(tokens))
    tag = secrets.token_hex(4)
    url = server.url
    gate = asyncio.Semaphore(connect_concurrency)
    release = asyncio.Event()
    all_in = asyncio.Event()
    pending_connects = clients
    state = [Client() for _ in range(clients)]
    send = orjson.dumps({"type": "message.send", "id": "m1", "content": QUESTION}).decode()

    async def one(i: int) -> None:
        nonlocal pending_connects
        c = state[i]
        hello = {"type": "hello", "bot": "demo", "session_id": f"bench-{tag}-{i}"}
        try:
            async with gate:
                c.ws = await connect(
                    url, compression=None, ping_interval=None, open_timeout=60, max_size=2**22
                )
                await c.ws.send(orjson.dumps(hello).decode())
                while True:
                    frame = orjson.loads(await c.ws.recv())
                    if frame.get("type") == "welcome":
                        break
                    if frame.get("type") == "error":
                        raise ConnectFailed(f"hello error {frame.get('code')}")
        except ConnectionClosed as exc:
            c.error, c.detail = "connect", closed_detail(exc)
        except Exception as exc:
            c.error, c.detail = "connect", f"{type(exc).__name__}: {exc}"
        finally:
            pending_connects -= 1
            if pending_connects == 0:
                all_in.set()
        if c.error:
            return
        assert c.ws is not None
        await release.wait()
        parts: list[str] = []
        last = 0.0
        try:
            c.t_send = time.perf_counter()
            await c.ws.send(send)
            async for raw in c.ws:
                now = time.perf_counter()
                frame = orjson.loads(raw)
                kind = frame.get("type")
                if kind == "run.token":
                    if c.ttft is None:
                        c.ttft = now - c.t_send
                    else:
                        c.gaps.append(now - last)
                    last = now
                    c.token_frames += 1
                    parts.append(frame.get("delta", ""))
                elif kind == "run.completed":
                    text = "".join(parts)
                    if text == expected:
                        c.ok = True
                    else:
                        c.error = "content"
                        c.detail = f"{len(text)} chars relayed, {len(expected)} expected"
                    break
                elif kind == "run.failed":
                    c.error = "run.failed"
                    c.detail = f"{frame.get('code')}: {frame.get('message')}"
                    break
                elif kind == "error":
                    c.error = "error"
                    c.detail = f"{frame.get('code')}: {frame.get('message')}"
                    break
            else:
                c.error, c.detail = "closed", "server closed before the run ended"
        except ConnectionClosed as exc:
            c.error, c.detail = "closed", closed_detail(exc)
        except Exception as exc:
            c.error, c.detail = "exception", f"{type(exc).__name__}: {exc}"
        finally:
            c.t_end = time.perf_counter()

    cpu_start = server.cpu_seconds()
    t_start = time.perf_counter()
    tasks = [asyncio.create_task(one(i)) for i in range(clients)]
    relay_wall = math.nan
    cpu_connect = cpu_relay = cpu_relay_settled = side_relay = math.nan
    try:
        try:
            await asyncio.wait_for(all_in.wait(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            pass
        connect_wall = time.perf_counter() - t_start
        cpu_mid = server.cpu_seconds()
        side_mid = fake.cpu_seconds() + own_cpu_seconds()
        cpu_connect = cpu_mid - cpu_start
        t_release = time.perf_counter()
        release.set()
        _, unfinished = await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        for c in state:
            if not c.ok and c.error is None:
                c.error = "timeout"
                c.detail = f"no run end within --timeout {limit:g}s"
        ends = [c.t_end for c in state if c.ok]
        relay_wall = (max(ends) - t_release) if ends else math.nan
        cpu_relay = server.cpu_seconds() - cpu_mid
        side_relay = fake.cpu_seconds() + own_cpu_seconds() - side_mid
        await asyncio.sleep(0.2)  # work right after the last frame (deferred writes) counts too
        cpu_relay_settled = server.cpu_seconds() - cpu_mid
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        closers = [c.ws.close() for c in state if c.ws is not None]
        try:
            await asyncio.wait_for(asyncio.gather(*closers, return_exceptions=True), timeout=10.0)
        except TimeoutError:
            pass

    ok = [c for c in state if c.ok]
    ttfts = [c.ttft for c in ok if c.ttft is not None]
    gaps = [g for c in ok for g in c.gaps]
    relayed = len(ok) * tokens
    durations = [c.t_end - c.t_send for c in ok]
    errors = Counter(c.error for c in state if c.error)
    samples: dict[str, str] = {}
    for c in state:
        if c.error and c.error not in samples:
            samples[c.error] = c.detail or ""
    details = Counter(f"{c.error}: {c.detail}" for c in state if c.error)
    return {
        "clients": clients,
        "completed": len(ok),
        "tokens": relayed,
        "relay_wall_s": relay_wall,
        "tokens_per_s": relayed / relay_wall if relayed and relay_wall > 0 else 0.0,
        "cpu_relay_s": cpu_relay_settled,
        "cpu_s_per_100k_tokens": cpu_relay_settled / relayed * 1e5 if relayed else math.nan,
        "server_busy_pct": cpu_relay / relay_wall * 100 if relay_wall > 0 else math.nan,
        "load_busy_pct": side_relay / relay_wall * 100 if relay_wall > 0 else math.nan,
        "cpu_connect_ms_per_conn": cpu_connect / clients * 1e3,
        "connect_wall_s": connect_wall,
        "ttft_p50_ms": percentile(ttfts, 50) * 1e3,
        "ttft_p99_ms": percentile(ttfts, 99) * 1e3,
        "gap_p50_ms": percentile(gaps, 50) * 1e3,
        "gap_p99_ms": percentile(gaps, 99) * 1e3,
        "run_p50_ms": percentile(durations, 50) * 1e3,
        "run_max_ms": max(durations, default=math.nan) * 1e3,
        "token_frames_per_run": statistics.median([c.token_frames for c in ok]) if ok else 0,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "error_samples": samples,
        "error_details": dict(details.most_common(10)),
        "server_rss_mb": server.rss_mb(),
        "config_wall_s": time.perf_counter() - t_start,
        "server_alive": server.alive(),
    }


# --------------------------------------------------------------------------- report

FIGURES = (
    "tokens_per_s",
    "cpu_s_per_100k_tokens",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "gap_p50_ms",
    "gap_p99_ms",
    "token_frames_per_run",
    "server_busy_pct",
    "load_busy_pct",
    "cpu_connect_ms_per_conn",
    "server_rss_mb",
)


def nanmedian(values: list[float]) -> float:
    finite = [v for v in values if isinstance(v, int | float) and not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {f: nanmedian([r[f] for r in runs]) for f in FIGURES}
    out["errors"] = sum(r["errors"] for r in runs)
    out["attempts"] = sum(r["clients"] for r in runs)
    kinds: Counter[str] = Counter()
    for r in runs:
        kinds.update(r["error_kinds"])
    out["error_kinds"] = dict(kinds)
    return out


def fmt(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


HEADER = (
    f"{'target':<9} {'delay':>5} {'C':>5} {'tok/s':>9} {'cpu s/100k':>10} "
    f"{'ttft p50':>9} {'ttft p99':>9} {'gap p50':>8} {'gap p99':>8} {'frm/run':>7} "
    f"{'srv%':>4} {'cli%':>4} {'conn ms':>7} {'rss MB':>6} {'errors':>10}"
)


def row(target: str, delay: float, clients: int, s: dict[str, Any]) -> str:
    return (
        f"{target:<9} {delay:>5g} {clients:>5} {fmt(s['tokens_per_s']):>9} "
        f"{fmt(s['cpu_s_per_100k_tokens'], 2):>10} {fmt(s['ttft_p50_ms'], 1):>9} "
        f"{fmt(s['ttft_p99_ms'], 1):>9} {fmt(s['gap_p50_ms'], 2):>8} "
        f"{fmt(s['gap_p99_ms'], 2):>8} {fmt(s['token_frames_per_run']):>7} "
        f"{fmt(s['server_busy_pct']):>4} {fmt(s['load_busy_pct']):>4} "
        f"{fmt(s['cpu_connect_ms_per_conn'], 2):>7} {fmt(s['server_rss_mb']):>6} "
        f"{str(s['errors']) + '/' + str(s['attempts']):>10}"
    )


def ratio(a: float, b: float) -> float:
    if a is None or b is None or math.isnan(a) or math.isnan(b) or b == 0:
        return math.nan
    return a / b


# --------------------------------------------------------------------------- main


def parse_list(text: str, kind: type) -> list[Any]:
    return [kind(x) for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Figures are medians over --repeat runs; see bench/README.md.",
    )
    p.add_argument(
        "--target",
        choices=("realtime", "baseline", "both"),
        default="both",
        help="server(s) to benchmark; 'both' interleaves them and prints ratios (both)",
    )
    p.add_argument("--clients", default="50,200,1000", help="client counts (50,200,1000)")
    p.add_argument("--tokens", type=int, default=200, help="tokens per answer (200)")
    p.add_argument(
        "--delays",
        default="0,0.02",
        help="fake-model pacing, seconds per token; one fake server each (0,0.02)",
    )
    p.add_argument("--repeat", type=int, default=3, help="runs per configuration (3)")
    p.add_argument(
        "--timeout", type=float, default=120.0, help="seconds per configuration run (120)"
    )
    p.add_argument(
        "--connect-concurrency",
        type=int,
        default=100,
        help="handshakes in flight at once while opening connections (100)",
    )
    p.add_argument("--quick", action="store_true", help="clients 50,200 and repeat 1 (a smoke run)")
    p.add_argument("--json", metavar="PATH", help="also write every run as JSON ('-': stdout)")
    p.add_argument("--keep-logs", action="store_true", help="keep the temp dir with server logs")
    p.add_argument("-v", "--verbose", action="store_true", help="print every run as it ends")
    return p


async def bench(
    args: argparse.Namespace, tmp: Path, procs: list[Proc], cpus: tuple[int | None, int | None]
) -> dict[str, Any]:
    server_cpu, load_cpu = cpus
    targets = list(TARGETS) if args.target == "both" else [args.target]
    clients = parse_list(args.clients, int)
    delays = parse_list(args.delays, float)
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "server_cpu": server_cpu, "load_cpu": load_cpu},
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "args": vars(args),
        "configs": [],
    }
    failed = False
    t0 = time.monotonic()
    for delay in delays:
        fake, fake_url = start_fake(tmp, args.tokens, delay, load_cpu)
        procs.append(fake)
        servers: dict[str, Proc] = {}
        for target in targets:
            servers[target] = start_target(target, tmp, fake_url, f"{delay:g}", server_cpu)
            procs.append(servers[target])
        if args.verbose:
            print(f"servers up at {time.monotonic() - t0:.0f}s", flush=True)
        # warm up (imports, caches, connection pools), all targets at once to save time
        await asyncio.gather(
            *(run_config(servers[t], fake, 20, args.tokens, args.timeout, 20) for t in targets)
        )
        for target in targets:
            servers[target].new_log_lines()
        runs: dict[tuple[str, int], list[dict[str, Any]]] = {
            (t, c): [] for t in targets for c in clients
        }
        for rep in range(args.repeat):
            for n in clients:
                for target in targets:
                    server = servers[target]
                    if not server.alive():
                        raise RuntimeError(f"{target} died:\n{server.tail()}")
                    r = await run_config(
                        server, fake, n, args.tokens, args.timeout, args.connect_concurrency
                    )
                    r.update(target=target, delay=delay, repeat=rep)
                    logged = server.new_log_lines()
                    r["server_log_lines"] = len(logged)
                    r["server_log_head"] = logged[:20]
                    if logged:
                        head = _indent("\n".join(logged[:20]))
                        print(
                            f"\n!! {target} delay={delay:g} C={n} repeat={rep}: the server "
                            f"logged {len(logged)} lines:\n{head}",
                            file=sys.stderr,
                            flush=True,
                        )
                    runs[(target, n)].append(r)
                    if args.verbose:
                        print(
                            row(target, delay, n, summarize([r]))
                            + f"  ({r['config_wall_s']:.1f}s, at {time.monotonic() - t0:.0f}s)",
                            flush=True,
                        )
                    if r["errors"] or not r["server_alive"]:
                        failed = True
                        print(
                            f"\n!! {target} delay={delay:g} C={n} repeat={rep}: "
                            f"{r['errors']} errors {r['error_kinds']}",
                            file=sys.stderr,
                        )
                        for text, count in r["error_details"].items():
                            print(f"   {count:>5} x {text}", file=sys.stderr)
                        print(f"   {target} log tail ({server.log_path}):", file=sys.stderr)
                        print(_indent(server.tail(30)), file=sys.stderr, flush=True)
                    await asyncio.sleep(0.5)  # let the server finish closing connections
        for (target, n), rs in runs.items():
            results["configs"].append(
                {"target": target, "delay": delay, "clients": n, **summarize(rs), "runs": rs}
            )
        for target in targets:
            servers[target].stop()
        fake.stop()
    results["failed"] = failed
    return results


def _indent(text: str) -> str:
    return "\n".join("   | " + line for line in text.splitlines())


def report(results: dict[str, Any]) -> str:
    lines = [HEADER, "-" * len(HEADER)]
    configs = results["configs"]
    order = sorted(configs, key=lambda c: (c["delay"], c["clients"], TARGETS.index(c["target"])))
    for c in order:
        lines.append(row(c["target"], c["delay"], c["clients"], c))
    by_key = {(c["target"], c["delay"], c["clients"]): c for c in configs}
    paired = [c for c in order if c["target"] == "realtime" and ("baseline",) + _k(c) in by_key]
    if paired:
        lines += ["", "realtime / baseline (median of per-repeat ratios, same run):"]
        lines.append(f"{'delay':>5} {'C':>5} {'cpu/100k tok':>13} {'ttft p50':>9} {'tok/s':>7}")
        for c in paired:
            b = by_key[("baseline",) + _k(c)]
            r = paired_ratios(c["runs"], b["runs"])
            c["ratios"] = r
            lines.append(
                f"{c['delay']:>5g} {c['clients']:>5} {fmt(r['cpu_s_per_100k_tokens'], 2):>13} "
                f"{fmt(r['ttft_p50_ms'], 2):>9} {fmt(r['tokens_per_s'], 2):>7}"
            )
    return "\n".join(lines)


def _k(c: dict[str, Any]) -> tuple[float, int]:
    return (c["delay"], c["clients"])


def paired_ratios(rt: list[dict[str, Any]], base: list[dict[str, Any]]) -> dict[str, float]:
    out = {}
    for f in ("cpu_s_per_100k_tokens", "ttft_p50_ms", "tokens_per_s"):
        out[f] = nanmedian([ratio(a[f], b[f]) for a, b in zip(rt, base, strict=False)])
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.clients, args.repeat = "50,200", 1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = max(parse_list(args.clients, int)) + 64
    if hard < need:
        print(f"warning: RLIMIT_NOFILE hard limit {hard} < {need} needed", file=sys.stderr)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    tmp = Path(tempfile.mkdtemp(prefix="relay_ws-"))
    procs: list[Proc] = []
    cpus = cpu_plan()  # before this process pins itself to the load CPU
    load_cpu = cpus[1]
    # Children are started with taskset; this process (the load generator) goes to load_cpu.
    factory = None
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        pass
    ok = False
    try:
        if load_cpu is not None:
            os.sched_setaffinity(0, {load_cpu})
        with asyncio.Runner(loop_factory=factory) as runner:
            results = runner.run(bench(args, tmp, procs, cpus))
        text = report(results)
        print(text)
        print(
            f"\n{results['date']}; {results['machine']['cpus']} CPUs "
            f"(server on {results['machine']['server_cpu']}, "
            f"load+fake on {results['machine']['load_cpu']}); tokens={args.tokens}, "
            f"repeat={args.repeat}; logs: {tmp if args.keep_logs else '(removed)'}"
        )
        if args.json:
            payload = orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
            if args.json == "-":
                sys.stdout.write(payload.decode() + "\n")
            else:
                Path(args.json).write_bytes(payload)
        ok = not results["failed"]
        if not ok:
            args.keep_logs = True
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        for p in procs:
            if p.log_path.exists():
                print(f"--- {p.name} log tail ({p.log_path}):\n{p.tail()}", file=sys.stderr)
        args.keep_logs = True
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for p in reversed(procs):
            p.stop()
        if args.keep_logs:
            print(f"logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
