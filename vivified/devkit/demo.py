"""`vivified demo [--once]`: core and the three example plugins, telling their story.

It starts core exactly as `vivified up` does (the same command as a child process: gateway,
egress proxy and an embedded nats-server) on a temporary data dir and free ports, a local
stand-in for the external rates API, and `examples/user-management`, `examples/hr` and
`examples/accounting` as child processes. Through the admin API it issues each plugin a
registration token, approves it and lets the egress proxy reach the stand-in
(`host_overrides` + `allowed_networks`); then the story runs (see `story.py`). With `--once`
it stops every child it started, by PID, and exits 0 when every step passed; otherwise it
keeps everything running until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

from vivified.config.children import ChildFailed, StopSignals, stop_all, wait_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = {
    "user-management": "user-management",
    "human-resources": "hr",
    "accounting": "accounting",
}
RATES_HOST = "rates.example.org"  # a public-looking name: .test/.example names are refused
_DROP_ENV = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_CERT_FILE")


class DemoError(RuntimeError):
    """A step of setting up the demo failed (the message says which)."""


@dataclass
class Stack:
    """What the demo started: child processes (stopped by PID) and where things are."""

    data_dir: Path
    admin_token: str
    out: TextIO
    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    gateway_url: str = ""
    egress: str = ""  # host:port of the egress proxy
    rates_port: int = 0
    plugins: dict[str, str] = field(default_factory=dict)  # id -> base URL

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def say(self, lane: str, verdict: str, text: str) -> None:
        print(f"{lane:<14} {verdict:<10} {text}", file=self.out, flush=True)

    def stop(self) -> None:
        stop_all([proc for _, proc in reversed(self.children)], 15)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@functools.cache
def _sdk_path() -> str:
    """The folder holding the `vivified_sdk` package (installed, or the clone's sdk/), for the
    children's PYTHONPATH."""
    spec = importlib.util.find_spec("vivified_sdk")
    if spec is not None and spec.origin:
        return str(Path(spec.origin).resolve().parents[1])
    candidate = REPO / "sdk"
    if (candidate / "vivified_sdk" / "__init__.py").exists():
        return str(candidate)
    raise DemoError("the plugin SDK is not installed: pip install ./sdk (vivified-sdk)")


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """Our environment without proxies or VIVIFIED_* settings, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("VIVIFIED_") and k.upper() not in _DROP_ENV
    }
    sdk = _sdk_path()
    if sdk:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (sdk, env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def _spawn(
    stack: Stack, name: str, cmd: list[str], env: Mapping[str, str], cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    logs = stack.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"{name}.log", "ab") as log:
        # Our own interpreter and modules, arguments we built: no untrusted input.
        proc = subprocess.Popen(  # noqa: S603
            cmd, env=dict(env), cwd=cwd, stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
    stack.children.append((name, proc))
    return proc


def _poll(check: Callable[[], Any], bound: float, what: str) -> Any:
    deadline = time.monotonic() + bound
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (httpx.HTTPError, OSError, ValueError) as exc:
            last = exc
        time.sleep(0.1)
    raise DemoError(f"{what} not reached within {bound:.0f} s" + (f" ({last})" if last else ""))


def start_core(stack: Stack) -> None:
    """`vivified up` on the demo's data dir with free ports (port files tell which)."""
    env = child_env(
        {
            "VIVIFIED_DATA_DIR": str(stack.data_dir),
            "VIVIFIED_ADMIN_TOKEN": stack.admin_token,
            "VIVIFIED_LOG_LEVEL": "warning",
        }
    )
    cmd = [sys.executable, "-m", "vivified", "up", "--gateway-port", "0", "--egress-port", "0"]
    proc = _spawn(stack, "core", cmd, env)
    run = stack.data_dir / "run"
    try:
        gateway = wait_port(run / "gateway.port", proc, "core (vivified up)", 90)
        egress = wait_port(run / "egress.port", proc, "core (vivified up)", 90)
    except ChildFailed as exc:
        raise DemoError(f"{exc}; see {stack.data_dir / 'logs' / 'core.log'}") from exc
    stack.gateway_url = f"http://127.0.0.1:{gateway}"
    stack.egress = f"127.0.0.1:{egress}"
    with httpx.Client(base_url=stack.gateway_url, trust_env=False, timeout=10) as c:
        _poll(lambda: c.get("/readyz").status_code == 200, 30, "core ready (/readyz)")


def start_rates(stack: Stack) -> None:
    port_file = stack.data_dir / "run" / "rates.port"
    cmd = [sys.executable, "-m", "vivified.devkit.rates_standin", "--port-file", str(port_file)]
    proc = _spawn(stack, "rates-standin", cmd, child_env({}))
    try:
        stack.rates_port = wait_port(port_file, proc, "rates stand-in", 20)
    except ChildFailed as exc:
        raise DemoError(str(exc)) from exc


def open_egress(admin: httpx.Client, stack: Stack) -> dict[str, Any]:
    """Let the proxy reach the stand-in: the name resolves to 127.0.0.1 (`host_overrides`),
    that one address is reachable (`allowed_networks`), and so is its port."""
    doc = _ok(admin.get("/admin/egress"), "GET /admin/egress")
    doc = {k: v for k, v in doc.items() if k != "version"}
    doc["enabled"] = True
    doc["host_overrides"] = {**doc.get("host_overrides", {}), RATES_HOST: "127.0.0.1"}
    doc["allowed_networks"] = sorted({*doc.get("allowed_networks", []), "127.0.0.1/32"})
    doc["allowed_ports"] = sorted({*doc.get("allowed_ports", []), 80, 443, stack.rates_port})
    stored: dict[str, Any] = _ok(admin.put("/admin/egress", json=doc), "PUT /admin/egress")
    return stored


def _ok(resp: httpx.Response, what: str) -> Any:
    if resp.status_code >= 400:
        raise DemoError(f"{what}: {resp.status_code} {resp.text[:300]}")
    return resp.json() if resp.content else {}


def registration_token(admin: httpx.Client, plugin_id: str) -> str:
    body = {"plugin_id": plugin_id, "uses": 1, "ttl_seconds": 600}
    token: str = _ok(admin.post("/admin/registration-tokens", json=body), "registration token")[
        "token"
    ]
    return token


def start_example(admin: httpx.Client, stack: Stack, plugin_id: str, examples: Path) -> None:
    folder = examples / EXAMPLES[plugin_id]
    if not (folder / "app.py").exists():
        raise DemoError(f"example {plugin_id} not found in {folder}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = child_env(
        {
            "VIVIFIED_GATEWAY_URL": stack.gateway_url,
            "VIVIFIED_REGISTRATION_TOKEN": registration_token(admin, plugin_id),
            "VIVIFIED_STATE_DIR": str(stack.data_dir / "plugins" / plugin_id),
            "VIVIFIED_EGRESS_PROXY": stack.egress,
            "VIVIFIED_PLUGIN_URL": url,
            "PORT": str(port),
            "RATES_URL": f"http://{RATES_HOST}:{stack.rates_port}/v1/latest?base=USD",
        }
    )
    _spawn(stack, plugin_id, [sys.executable, "main.py"], env, cwd=folder)
    stack.plugins[plugin_id] = url


def approve(admin: httpx.Client, stack: Stack, plugin_id: str) -> str:
    """Wait until the plugin serves and registered, then approve it; returns its status."""
    proc = next(p for name, p in stack.children if name == plugin_id)
    log = stack.data_dir / "logs" / f"{plugin_id}.log"

    def serving(c: httpx.Client) -> bool:
        if proc.poll() is not None:
            raise DemoError(f"{plugin_id} exited with {proc.returncode}; see {log}")
        return c.get("/health").status_code == 200

    with httpx.Client(base_url=stack.plugins[plugin_id], trust_env=False, timeout=5) as c:
        _poll(lambda: serving(c), 60, f"{plugin_id} /health")
    _poll(
        lambda: admin.get(f"/plugins/{plugin_id}").status_code == 200,
        30,
        f"{plugin_id} registered",
    )
    before = str(admin.get(f"/plugins/{plugin_id}").json()["status"])
    after = str(_ok(admin.post(f"/plugins/{plugin_id}/enable"), f"enable {plugin_id}")["status"])
    stack.say(
        "lifecycle", "APPROVED", f"{plugin_id}: {before} -> {after} ({stack.plugins[plugin_id]})"
    )
    return after


def wait_subscribed(admin: httpx.Client, plugin_id: str) -> None:
    def ready() -> bool:
        items = admin.get("/admin/events/subscribers").json().get("items", [])
        return any(i.get("subscriber") == plugin_id and i.get("pending") is not None for i in items)

    _poll(ready, 30, f"{plugin_id}'s event subscription")


def _check_prerequisites(examples: Path) -> None:
    if importlib.util.find_spec("fastapi") is None:
        raise DemoError("the example plugins need FastAPI: pip install fastapi")
    if not examples.is_dir():
        raise DemoError(f"no examples folder at {examples} (run from a clone of the repository)")
    sdk = _sdk_path()
    if sdk not in sys.path:  # the demo's own driver plugin uses it too
        sys.path.append(sdk)


def run_demo(
    *,
    once: bool,
    examples: Path | None = None,
    data_dir: Path | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Start everything, run the story, then stop (`once`) or wait for Ctrl-C."""
    from vivified.devkit.story import run_story

    examples = (examples or REPO / "examples").resolve()
    temp = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="vivified-demo-")) if data_dir is None else data_dir
    root.mkdir(parents=True, exist_ok=True)
    stack = Stack(root.resolve(), secrets.token_urlsafe(32), out)
    keep = False
    signals = StopSignals()
    started = time.monotonic()
    try:
        _check_prerequisites(examples)
        stack.say("core", "STARTING", f"vivified up on {stack.data_dir} (free ports)")
        start_core(stack)
        start_rates(stack)
        stack.say(
            "core",
            "UP",
            f"gateway {stack.gateway_url}, egress proxy {stack.egress}, "
            f"rates stand-in {RATES_HOST} -> 127.0.0.1:{stack.rates_port}",
        )
        with httpx.Client(
            base_url=stack.gateway_url,
            headers=stack.admin_headers,
            trust_env=False,
            timeout=30,
        ) as admin:
            open_egress(admin, stack)
            for plugin_id in EXAMPLES:
                start_example(admin, stack, plugin_id, examples)
            for plugin_id in EXAMPLES:
                approve(admin, stack, plugin_id)
            wait_subscribed(admin, "accounting")
        ok = asyncio.run(run_story(stack))
        keep = not ok
        took = time.monotonic() - started
        stack.say("demo", "PASSED" if ok else "FAILED", f"story finished in {took:.1f} s")
        if once:
            return 0 if ok else 1
        print(
            f"\nConsole:     {stack.gateway_url}/console\n"
            f"Admin token: {stack.admin_token}\n"
            f"Logs:        {stack.data_dir / 'logs'}\n"
            "Everything keeps running; press Ctrl-C to stop.",
            file=out,
            flush=True,
        )
        while not signals.stop:
            for name, proc in stack.children:
                if proc.poll() is not None:
                    print(f"vivified demo: {name} exited with {proc.returncode}", file=out)
                    return 1
            time.sleep(0.2)
        return 0
    except DemoError as exc:
        keep = True
        print(f"vivified demo: {exc}", file=out, flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()
        if keep:
            print(f"vivified demo: logs kept in {stack.data_dir / 'logs'}", file=out, flush=True)
        elif temp:
            shutil.rmtree(stack.data_dir, ignore_errors=True)
