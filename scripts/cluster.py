#!/usr/bin/env python3
"""Run a realtime cluster on this machine: N nodes on loopback behind Debian's nginx.

    python scripts/cluster.py up --nodes 3 --dir /tmp/rt --port 8080
    python scripts/cluster.py status --dir /tmp/rt
    python scripts/cluster.py kill node-2 --dir /tmp/rt     # SIGKILL one node
    python scripts/cluster.py start node-2 --dir /tmp/rt    # start it again, on its port
    python scripts/cluster.py down --dir /tmp/rt
    python scripts/cluster.py nginx-config --compose > deploy/nginx.conf

``up`` starts N ``realtime serve`` processes (``REALTIME_NODE_ID=node-1..N``) on free
loopback ports, all on one PostgreSQL database (created when missing) and one Redis under one
key prefix, with one admin key; their logs go to ``DIR/node-<i>.log``. Once every node's
``/ready`` answers 200 it writes ``DIR/nginx.conf`` and starts nginx
(``nginx -p DIR -c DIR/nginx.conf``: its pid, logs and temp files stay in DIR, so it needs
no root paths) on ``127.0.0.1:PORT``, then writes ``DIR/cluster.json`` (ports, pids) and
prints it. Processes run in sessions of their own and outlive this command; ``down`` stops
them (SIGTERM, then SIGKILL after ``--timeout`` seconds).

The same thing from Python (tests, benchmarks)::

    from scripts.cluster import Cluster

    with Cluster(tmp_dir, nodes=3, database_url=url, redis_prefix="rt-x:") as cluster:
        cluster.url            # nginx, http://127.0.0.1:<port>
        cluster.node_url(1)    # node-1 itself
        cluster.kill(2)        # SIGKILL node-2
        cluster.restart(2)     # and start it again on the same port

Node numbers are 1-based, like their ids. The nginx configuration is rendered from one
template (:data:`NGINX_TEMPLATE`); ``deploy/nginx.conf``, which ``docker-compose.yml``
mounts, is its rendering for docker compose (``nginx-config --compose``), and a test checks
that the two agree.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/realtime"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_REDIS_PREFIX = "rt:"
STATE_FILE = "cluster.json"
HOST = "127.0.0.1"
MARKER = "RT_CLUSTER_DIR"  # in each node's environment: tells our processes from others

# --------------------------------------------------------------------------- nginx

# One template for both renderings; @NAME@ are the placeholders (nginx uses $ and braces).
NGINX_TEMPLATE = """\
# nginx in front of the realtime nodes (@MODE@).
# Rendered by scripts/cluster.py from its NGINX_TEMPLATE; deploy/nginx.conf is the docker
# compose rendering: `python scripts/cluster.py nginx-config --compose > deploy/nginx.conf`.
worker_processes auto;
pid @PID@;
error_log @ERROR_LOG@ warn;

events {
    worker_connections 4096;
}

http {
    access_log @ACCESS_LOG@;
@TEMP_PATHS@
    # A WebSocket handshake carries `Upgrade: websocket`: pass it on with
    # `Connection: upgrade`. Other requests get an empty Connection header, which keeps the
    # connection to the node alive (HTTP/1.1) for the next request.
    map $http_upgrade $connection_upgrade {
        default upgrade;
        ""      "";
    }

    upstream realtime {
        # WebSockets and SSE streams are long: balance the open connections, not requests.
        least_conn;
        # Passive health: a node that failed max_fails times is left out for fail_timeout,
        # then tried again.
@SERVERS@
        keepalive 32;
    }

    server {
        listen @LISTEN@;

        location / {
            proxy_pass http://realtime;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;

            # A WebSocket or an SSE stream may stay open, and quiet, for a long time.
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
            proxy_connect_timeout 5s;

            # Stream as it comes (SSE tokens, uploads): never buffer, so no temp files.
            proxy_buffering off;
            proxy_request_buffering off;
            client_max_body_size 16m;

            # A node that refuses or does not answer is skipped: the next one gets the request.
            proxy_next_upstream error timeout;
            proxy_next_upstream_timeout 15s;
        }
    }
}
"""

UPSTREAM_PARAMS = "max_fails=2 fail_timeout=10s"


def render_nginx_conf(
    servers: Sequence[str],
    *,
    listen: str,
    pid: str,
    error_log: str,
    access_log: str,
    temp_dir: str | None,
    mode: str,
) -> str:
    """The nginx configuration for ``servers`` (``host:port`` each)."""
    temp = ""
    if temp_dir is not None:  # Debian's nginx would use /var/lib/nginx/* otherwise
        temp = "".join(
            f"    {name}_temp_path {temp_dir}/{name};\n"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
    values = {
        "MODE": mode,
        "PID": pid,
        "ERROR_LOG": error_log,
        "ACCESS_LOG": access_log,
        "TEMP_PATHS": temp,
        "SERVERS": "\n".join(f"        server {s} {UPSTREAM_PARAMS};" for s in servers),
        "LISTEN": listen,
    }
    text = NGINX_TEMPLATE
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    return text


def local_nginx_conf(directory: Path, port: int, node_ports: Sequence[int]) -> str:
    """The configuration of the script's own nginx: everything under ``directory``."""
    d = directory.resolve()
    return render_nginx_conf(
        [f"{HOST}:{p}" for p in node_ports],
        listen=f"{HOST}:{port}",
        pid=f"{d}/nginx.pid",
        error_log=f"{d}/logs/error.log",
        access_log=f"{d}/logs/access.log",
        temp_dir=f"{d}/temp",
        mode=f"scripts/cluster.py, {len(node_ports)} nodes on loopback",
    )


def compose_nginx_conf(nodes: int = 3) -> str:
    """deploy/nginx.conf: the nginx of docker-compose.yml (nodes ``node-i:8000``)."""
    return render_nginx_conf(
        [f"node-{i}:8000" for i in range(1, nodes + 1)],
        listen="80",
        pid="/var/run/nginx.pid",
        error_log="stderr",
        access_log="/dev/stdout",
        temp_dir=None,
        mode=f"docker-compose.yml, {nodes} nodes",
    )


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as nginx binds
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def _free_ports(count: int, taken: set[int]) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in taken and port not in ports:
            ports.append(port)
    return ports


def nginx_binary() -> str | None:
    """nginx on PATH, or Debian's (in /usr/sbin, which a user's PATH may lack)."""
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status of GET ``url``, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def process_alive(pid: int | None) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X")


def _environ_of(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def _cmdline_of(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """``sig`` to the process group that ``pid`` leads (its own session), else to ``pid``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, sig)
                return
        except ProcessLookupError:
            return
        os.kill(pid, sig)


def _redact_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


# --------------------------------------------------------------------------- databases


def _pg_params(url: str) -> dict[str, Any]:
    parts = urllib.parse.urlsplit(url)
    return {
        "host": parts.hostname or HOST,
        "port": parts.port or 5432,
        "user": urllib.parse.unquote(parts.username) if parts.username else None,
        "password": urllib.parse.unquote(parts.password) if parts.password else None,
        "database": parts.path.lstrip("/") or "postgres",
    }


def is_postgres(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


async def _admin_execute(url: str, statement: str, *args: Any) -> list[Any]:
    import asyncpg  # a dependency of the project

    params = _pg_params(url)
    params["database"] = "postgres"
    conn = await asyncpg.connect(**params)
    try:
        return list(await conn.fetch(statement, *args))
    finally:
        await conn.close()


def _run(coro: Any) -> Any:
    """Run ``coro`` on a fresh loop, on a thread, so callers may have a loop of their own."""
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def ensure_database(url: str) -> bool:
    """Create the PostgreSQL database of ``url`` unless it exists; True if it was created."""
    if not is_postgres(url):
        return False
    name = _pg_params(url)["database"]
    rows = _run(_admin_execute(url, "SELECT 1 FROM pg_database WHERE datname = $1", name))
    if rows:
        return False
    _run(_admin_execute(url, f"CREATE DATABASE {_quote_ident(name)}"))
    return True


def create_database(url: str) -> None:
    """Create the (new) PostgreSQL database of ``url``."""
    name = _pg_params(url)["database"]
    _run(_admin_execute(url, f"CREATE DATABASE {_quote_ident(name)} TEMPLATE template0"))


def drop_database(url: str) -> None:
    """Drop the PostgreSQL database of ``url``, connections and all."""
    name = _pg_params(url)["database"]
    _run(_admin_execute(url, f"DROP DATABASE IF EXISTS {_quote_ident(name)} WITH (FORCE)"))


# --------------------------------------------------------------------------- the cluster


class ClusterError(RuntimeError):
    pass


@dataclass
class Node:
    index: int  # 1-based
    port: int
    log: Path
    pid: int | None = None
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return f"node-{self.index}"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return process_alive(self.pid)


class Cluster:
    """N ``realtime serve`` processes on loopback, and nginx in front of them.

    ``port=0`` gives nginx a free port; ``nginx=False`` starts the nodes only;
    ``redis_url=""`` gives each node the in-process broker. A node's environment is this
    process's, then the cluster's ``REALTIME_*`` settings, then ``env`` (which wins). Use
    :meth:`start`/:meth:`stop`, or ``with``.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        nodes: int = 3,
        *,
        port: int = 0,
        database_url: str = DEFAULT_DATABASE_URL,
        redis_url: str = DEFAULT_REDIS_URL,
        redis_prefix: str = DEFAULT_REDIS_PREFIX,
        admin_key: str = "",
        env: Mapping[str, str] | None = None,
        nginx: bool = True,
        python: str = sys.executable,
        ready_timeout: float = 60.0,
        stop_timeout: float = 20.0,
    ) -> None:
        if nodes < 1:
            raise ValueError("a cluster has at least one node")
        self.dir = Path(directory).resolve()
        self.count = nodes
        self.port = port
        self.database_url = database_url
        self.redis_url = redis_url
        self.redis_prefix = redis_prefix
        self.admin_key = admin_key
        self.env = dict(env or {})
        self.use_nginx = nginx
        self.python = python
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.nodes: list[Node] = []
        self.nginx_pid: int | None = None
        self._nginx: subprocess.Popen[bytes] | None = None
        self._logs: list[Any] = []

    # -- addresses ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """nginx's URL (the cluster's entry point)."""
        if not self.use_nginx:
            raise ClusterError("this cluster runs without nginx")
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/ws"

    def node(self, which: int | str) -> Node:
        """Node ``which``: its number (1-based) or its id (``node-2``)."""
        text = str(which)
        index = int(text.removeprefix("node-")) if text.removeprefix("node-").isdigit() else 0
        if not 1 <= index <= len(self.nodes):
            raise ClusterError(f"no node {which!r}: the nodes are 1..{len(self.nodes)}")
        return self.nodes[index - 1]

    def node_url(self, which: int | str) -> str:
        return self.node(which).url

    def node_ws_url(self, which: int | str) -> str:
        return self.node(which).url.replace("http://", "ws://", 1) + "/ws"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Cluster:
        """Start the nodes, wait until each is ready, then nginx. Stops all on failure."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.use_nginx and nginx_binary() is None:
            raise ClusterError(
                "nginx is not installed (Debian: apt-get install -y nginx; .ci/run does it)"
            )
        if (self.dir / STATE_FILE).exists():
            try:
                running = Cluster.load(self.dir).running()
            except (ClusterError, ValueError, KeyError, OSError):
                running = False  # unreadable: nothing to protect
            if running:
                raise ClusterError(f"a cluster already runs in {self.dir}: run down first")
        if self.use_nginx and self.port and not _port_free(self.port):
            raise ClusterError(f"port {self.port} is taken: choose another with --port")
        try:
            try:
                ensure_database(self.database_url)
            except Exception as exc:  # no right to create it, say: the nodes will tell
                print(f"cluster: could not check the database: {exc!r}", file=sys.stderr)
            ports = _free_ports(self.count, {self.port})
            self.nodes = [
                Node(i, port, self.dir / f"node-{i}.log") for i, port in enumerate(ports, 1)
            ]
            for node in self.nodes:
                self._spawn(node)
            for node in self.nodes:
                self._wait_ready(node)
            if self.use_nginx:
                if not self.port:
                    self.port = _free_ports(1, set(ports))[0]
                self._start_nginx()
            self.save()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM nginx and every node, then SIGKILL what is left after ``stop_timeout``."""
        targets: list[tuple[int, subprocess.Popen[bytes] | None]] = []
        if self.nginx_pid and self._ours_nginx(self.nginx_pid):
            targets.append((self.nginx_pid, self._nginx))
        for node in self.nodes:
            if node.pid and self._ours_node(node):
                targets.append((node.pid, node.popen))
        for pid, _ in targets:
            _signal_group(pid, signal.SIGTERM)
        self._wait_gone(targets, self.stop_timeout)
        for pid, popen in targets:
            if (popen.poll() is None) if popen is not None else process_alive(pid):
                _signal_group(pid, signal.SIGKILL)
        self._wait_gone(targets, 5.0)
        for pid, _ in targets:  # whatever a node left in its group
            _signal_group(pid, signal.SIGKILL)
        self.nginx_pid = None
        self._nginx = None
        for node in self.nodes:
            node.pid = None
            node.popen = None
        for log in self._logs:
            log.close()
        self._logs.clear()
        if (self.dir / STATE_FILE).exists():
            self.save()

    def kill(self, which: int | str) -> Node:
        """SIGKILL one node (no drain: what a crash looks like to the others)."""
        node = self.node(which)
        if node.pid and self._ours_node(node):
            _signal_group(node.pid, signal.SIGKILL)
            self._wait_gone([(node.pid, node.popen)], 5.0)
        node.pid = None
        node.popen = None
        self.save()
        return node

    def restart(self, which: int | str) -> Node:
        """Start a node that was killed (or stop and start one that runs), on its port."""
        node = self.node(which)
        if node.pid and self._ours_node(node):
            _signal_group(node.pid, signal.SIGTERM)
            self._wait_gone([(node.pid, node.popen)], self.stop_timeout)
            if self._ours_node(node):
                _signal_group(node.pid, signal.SIGKILL)
                self._wait_gone([(node.pid, node.popen)], 5.0)
        self._spawn(node)
        self._wait_ready(node)
        self.save()
        return node

    def running(self) -> bool:
        """True while nginx or any node still runs."""
        return bool(
            (self.nginx_pid and self._ours_nginx(self.nginx_pid))
            or any(n.pid and self._ours_node(n) for n in self.nodes)
        )

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state -------------------------------------------------------------------------------

    def state(self, *, secrets_too: bool = True) -> dict[str, Any]:
        """What cluster.json holds (without the admin key and env values, if asked)."""

        def hide(value: str) -> str:
            return value if secrets_too or not value else "***"

        return {
            "dir": str(self.dir),
            "url": self.url if self.use_nginx else None,
            "nginx": {
                "port": self.port if self.use_nginx else None,
                "pid": self.nginx_pid,
                "config": str(self.dir / "nginx.conf") if self.use_nginx else None,
            },
            "nodes": [
                {
                    "id": n.id,
                    "port": n.port,
                    "pid": n.pid,
                    "url": n.url,
                    "log": str(n.log),
                    "alive": bool(n.pid) and self._ours_node(n),
                }
                for n in self.nodes
            ],
            "database_url": self.database_url if secrets_too else _redact_url(self.database_url),
            "redis_url": self.redis_url if secrets_too else _redact_url(self.redis_url),
            "redis_prefix": self.redis_prefix,
            "admin_key": hide(self.admin_key),
            "env": {k: hide(v) for k, v in self.env.items()},
            "python": self.python,
        }

    def save(self) -> None:
        path = self.dir / STATE_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.state(), indent=2) + "\n")
        tmp.chmod(0o600)  # it holds the admin key
        tmp.replace(path)

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Cluster:
        """The cluster that ``up`` (or :meth:`start`) recorded in ``directory``."""
        path = Path(directory).resolve() / STATE_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ClusterError(f"no cluster in {path.parent} (no {STATE_FILE})") from None
        nginx = data.get("nginx") or {}
        cluster = cls(
            path.parent,
            nodes=max(1, len(data["nodes"])),
            port=nginx.get("port") or 0,
            database_url=data["database_url"],
            redis_url=data["redis_url"],
            redis_prefix=data["redis_prefix"],
            admin_key=data.get("admin_key") or "",
            env=data.get("env") or {},
            nginx=bool(nginx.get("port")),
            python=data.get("python") or sys.executable,
        )
        cluster.nginx_pid = nginx.get("pid")
        cluster.nodes = [
            Node(int(n["id"].removeprefix("node-")), int(n["port"]), Path(n["log"]), n.get("pid"))
            for n in data["nodes"]
        ]
        return cluster

    # -- internals ---------------------------------------------------------------------------

    def node_env(self, node: Node) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "REALTIME_HOST": HOST,
                "REALTIME_PORT": str(node.port),
                "REALTIME_NODE_ID": node.id,
                "REALTIME_DATABASE_URL": self.database_url,
                "REALTIME_REDIS_URL": self.redis_url,
                "REALTIME_REDIS_PREFIX": self.redis_prefix,
                "PYTHONUNBUFFERED": "1",
                MARKER: str(self.dir),
            }
        )
        if self.admin_key:
            env["REALTIME_ADMIN_KEY"] = self.admin_key
        env.update(self.env)
        return env

    def _spawn(self, node: Node) -> None:
        log = open(node.log, "ab")  # noqa: SIM115 - closed by stop()
        self._logs.append(log)
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {node.id}\n".encode())
        log.flush()
        node.popen = subprocess.Popen(
            [self.python, "-m", "realtime", "serve"],
            cwd=REPO,  # this checkout's code
            env=self.node_env(node),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal does not reach it; killpg does
        )
        node.pid = node.popen.pid

    def _wait_ready(self, node: Node) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if not node.alive():
                raise ClusterError(f"{node.id} exited while starting:\n{_tail(node.log)}")
            if http_status(f"{node.url}/ready") == 200:
                return
            time.sleep(0.1)
        raise ClusterError(f"{node.id} not ready after {self.ready_timeout:g}s:\n{_tail(node.log)}")

    def _start_nginx(self) -> None:
        (self.dir / "logs").mkdir(exist_ok=True)
        (self.dir / "temp").mkdir(exist_ok=True)
        conf = self.dir / "nginx.conf"
        conf.write_text(local_nginx_conf(self.dir, self.port, [n.port for n in self.nodes]))
        argv = [
            nginx_binary() or "nginx",
            "-p",
            f"{self.dir}/",
            "-c",
            str(conf),
            "-g",
            "daemon off;",
        ]
        check = subprocess.run(
            [*argv[:5], "-t", *argv[5:]], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise ClusterError(f"nginx -t failed:\n{check.stderr}")
        log = open(self.dir / "nginx.log", "ab")  # noqa: SIM115 - closed by stop()
        self._logs.append(log)
        self._nginx = subprocess.Popen(
            argv,
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.nginx_pid = self._nginx.pid
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._nginx.poll() is not None:
                raise ClusterError(
                    f"nginx exited ({self._nginx.returncode}):\n{_tail(self.dir / 'nginx.log')}"
                    f"\n{_tail(self.dir / 'logs' / 'error.log')}"
                )
            if http_status(f"{self.url}/ready") == 200:
                return
            time.sleep(0.1)
        raise ClusterError(f"nginx does not answer on {self.url}")

    def _ours_node(self, node: Node) -> bool:
        """Whether ``node.pid`` is still that node (and not a later process with its pid)."""
        if node.popen is not None:
            return node.popen.poll() is None
        if not process_alive(node.pid):
            return False
        assert node.pid is not None
        env = _environ_of(node.pid)
        if not env:  # /proc unreadable: trust the pid
            return True
        return env.get(MARKER) == str(self.dir) and env.get("REALTIME_NODE_ID") == node.id

    def _ours_nginx(self, pid: int) -> bool:
        if self._nginx is not None and self._nginx.pid == pid:
            return self._nginx.poll() is None
        if not process_alive(pid):
            return False
        cmdline = _cmdline_of(pid)
        return not cmdline or any(str(self.dir) in part for part in cmdline)

    @staticmethod
    def _wait_gone(
        targets: Sequence[tuple[int, subprocess.Popen[bytes] | None]], timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(
                (p.poll() is None) if p is not None else process_alive(pid) for pid, p in targets
            ):
                return
            time.sleep(0.05)


# --------------------------------------------------------------------------- command line


def _env_pairs(items: Sequence[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"-e {item!r}: expected NAME=VALUE")
        env[name] = value
    return env


def _print_state(cluster: Cluster) -> None:
    print(json.dumps(cluster.state(secrets_too=False), indent=2))


def _generated_admin_key(cluster: Cluster) -> str | None:
    """The admin key a node generated and printed once (no key was configured)."""
    for node in cluster.nodes:
        for line in _tail(node.log, 400).splitlines():
            if "REALTIME_ADMIN_KEY=" in line:
                return line.split("REALTIME_ADMIN_KEY=", 1)[1].strip()
    return None


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except ClusterError as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cluster.py",
        description="Run N realtime nodes on loopback behind nginx (one PostgreSQL, one Redis).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  python scripts/cluster.py up --nodes 3 --dir /tmp/rt --port 8080\n"
            "  python scripts/cluster.py kill node-2 --dir /tmp/rt\n"
            "  python scripts/cluster.py start node-2 --dir /tmp/rt\n"
            "  python scripts/cluster.py down --dir /tmp/rt"
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start the nodes and nginx; print cluster.json")
    up.add_argument("--nodes", type=int, default=3, help="how many nodes (3)")
    up.add_argument("--dir", required=True, help="state, logs and nginx files go here")
    up.add_argument("--port", type=int, default=8080, help="nginx's port on 127.0.0.1 (8080)")
    up.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"shared PostgreSQL, created if missing ({DEFAULT_DATABASE_URL})",
    )
    up.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help=f"({DEFAULT_REDIS_URL})")
    up.add_argument(
        "--redis-prefix", default=DEFAULT_REDIS_PREFIX, help=f"({DEFAULT_REDIS_PREFIX})"
    )
    up.add_argument(
        "--admin-key",
        default=os.environ.get("REALTIME_ADMIN_KEY", ""),
        help="the admin key of every node (REALTIME_ADMIN_KEY; unset: the database's own, "
        "or one generated on first start and shown in cluster.json once)",
    )
    up.add_argument(
        "-e",
        dest="env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable of every node (repeatable), e.g. -e OPENAI_API_KEY=...",
    )
    up.add_argument("--no-nginx", action="store_true", help="start the nodes only")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds a node has to get ready")

    down = commands.add_parser("down", help="stop nginx and the nodes")
    down.add_argument("--dir", required=True)
    down.add_argument(
        "--timeout", type=float, default=20.0, help="seconds between SIGTERM and SIGKILL (20)"
    )

    status = commands.add_parser("status", help="print cluster.json with what still runs")
    status.add_argument("--dir", required=True)

    kill = commands.add_parser("kill", help="SIGKILL one node (node-2, or 2)")
    kill.add_argument("node")
    kill.add_argument("--dir", required=True)

    start = commands.add_parser("start", help="start a killed node again, on its port")
    start.add_argument("node")
    start.add_argument("--dir", required=True)
    start.add_argument("--timeout", type=float, default=60.0)

    conf = commands.add_parser("nginx-config", help="print the nginx configuration")
    conf.add_argument(
        "--compose", action="store_true", help="the docker compose one (deploy/nginx.conf)"
    )
    conf.add_argument("--nodes", type=int, default=3)
    conf.add_argument("--dir", help="(without --compose) the cluster whose config to render")

    args = parser.parse_args(argv)
    with _errors():
        if args.command == "up":
            cluster = Cluster(
                args.dir,
                nodes=args.nodes,
                port=args.port,
                database_url=args.database_url,
                redis_url=args.redis_url,
                redis_prefix=args.redis_prefix,
                admin_key=args.admin_key,
                env=_env_pairs(args.env),
                nginx=not args.no_nginx,
                ready_timeout=args.timeout,
            )
            cluster.start()
            state = cluster.state(secrets_too=False)
            generated = None if cluster.admin_key else _generated_admin_key(cluster)
            if generated:
                state["admin_key"] = generated
                state["admin_key_note"] = "generated for this database; shown only once"
            print(json.dumps(state, indent=2))
        elif args.command == "down":
            cluster = Cluster.load(args.dir)
            cluster.stop_timeout = args.timeout
            cluster.stop()
            _print_state(cluster)
        elif args.command == "status":
            cluster = Cluster.load(args.dir)
            if cluster.nginx_pid and not cluster._ours_nginx(cluster.nginx_pid):
                cluster.nginx_pid = None
            _print_state(cluster)
        elif args.command == "kill":
            cluster = Cluster.load(args.dir)
            cluster.kill(args.node)
            _print_state(cluster)
        elif args.command == "start":
            cluster = Cluster.load(args.dir)
            cluster.ready_timeout = args.timeout
            cluster.restart(args.node)
            _print_state(cluster)
        elif args.command == "nginx-config":
            if args.compose:
                print(compose_nginx_conf(args.nodes), end="")
            elif args.dir:
                cluster = Cluster.load(args.dir)
                ports = [n.port for n in cluster.nodes]
                print(local_nginx_conf(cluster.dir, cluster.port, ports), end="")
            else:
                ports = [8001 + i for i in range(args.nodes)]
                print(local_nginx_conf(Path("cluster"), 8080, ports), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
