"""`trainq up`: Redis, migrations, API, workers, reconciler and controller on one machine."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from service.config import Config
from service.ops.redis_server import RedisServer

log = logging.getLogger("trainq.up")
EMBEDDED_REDIS_PORT = int(os.environ.get("TRAINQ_REDIS_PORT", "6390"))


@dataclass
class Component:
    """A child process trainq up starts, watches and restarts when it dies."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    backoff_until: float = 0.0
    history: list[float] = field(default_factory=list)

    def start(self) -> None:
        """Start the process in its own process group, output to its log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            # Its own group: the supervisor signals the whole tree (Celery's pool children
            # too) on the way out, and a terminal's Ctrl-C does not reach it twice.
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        log.info("started %s (pid %d), log %s", self.name, self.process.pid, self.log_path)

    def alive(self) -> bool:
        """Whether the process is running."""
        return self.process is not None and self.process.poll() is None

    def signal_group(self, sig: int) -> None:
        """Send a signal to the component's whole process group."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the group, wait, then SIGKILL whatever is left."""
        if self.process is None:
            return
        self.signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s: killing it", self.name, timeout)
        # Pool children can outlive their parent: kill the group regardless.
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)


def cuda_available(python: str = sys.executable) -> bool:
    """Whether torch sees CUDA, asked in a child so this process never imports torch."""
    probe = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    try:
        return subprocess.run([python, "-c", probe], timeout=120, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def build_components(
    config: Config, env: dict[str, str], host: str, port: int, concurrency: int, gpu: bool
) -> list[Component]:
    """The processes of one embedded deployment."""
    python = sys.executable
    logs = config.var_dir / "logs"
    cpu_pool = ["--concurrency", str(concurrency), "--hostname", "cpu@%h"]
    components = [
        Component(
            "api",
            [python, "-m", "service.cli", "api", "--host", host, "--port", str(port)],
            env,
            logs / "api.log",
        ),
        Component(
            "worker-cpu",
            [python, "-m", "service.cli", "worker", "--queues", "cpu", *cpu_pool],
            env,
            logs / "worker-cpu.log",
        ),
        Component(
            "reconciler", [python, "-m", "service.cli", "reconcile"], env, logs / "reconciler.log"
        ),
        Component(
            "controller", [python, "-m", "service.cli", "controller"], env, logs / "controller.log"
        ),
    ]
    if gpu:
        components.append(
            Component(
                "worker-gpu",
                [python, "-m", "service.cli", "worker", "--queues", "gpu", "--hostname", "gpu@%h"],
                env,
                logs / "worker-gpu.log",
            )
        )
    return components


class Supervisor:
    """Starts every component, restarts those that die, stops all of them on a signal."""

    def __init__(self, components: list[Component], redis: RedisServer | None) -> None:
        self.components = components
        self.redis = redis
        self._stopping = False

    def request_stop(self, signum: int, _frame: object) -> None:
        """Signal handler: leave the watch loop."""
        log.info("received %s: stopping", signal.Signals(signum).name)
        self._stopping = True

    def run(self, ready_message: str) -> None:
        """Start everything and watch until asked to stop."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self.request_stop)
        try:
            for component in self.components:
                component.start()
            print(ready_message, flush=True)
            while not self._stopping:
                self.watch_once()
                time.sleep(0.5)
        finally:
            self.stop_all()

    def watch_once(self) -> None:
        """Restart any component that died, backing off if it keeps dying."""
        now = time.monotonic()
        if self.redis is not None and not self.redis.is_running():
            log.warning("redis-server died: restarting it")
            self.redis.start()
        for component in self.components:
            if component.alive() or now < component.backoff_until:
                continue
            code = component.process.returncode if component.process else None
            component.history = [t for t in component.history if now - t < 60] + [now]
            # Five deaths in a minute: wait before the next try instead of spinning.
            delay = 10.0 if len(component.history) >= 5 else 0.0
            if delay and component.backoff_until <= now - 1:
                component.backoff_until = now + delay
                log.error(
                    "%s keeps dying (exit %s): retrying in %.0f s", component.name, code, delay
                )
                continue
            component.restarts += 1
            log.warning("%s exited with %s: restart #%d", component.name, code, component.restarts)
            component.start()

    def stop_all(self) -> None:
        """Stop the components, then Redis; nothing is left behind."""
        for component in reversed(self.components):
            component.stop()
        if self.redis is not None:
            self.redis.stop()
        log.info("all stopped")


def up(host: str = "127.0.0.1", port: int = 5000, concurrency: int | None = None) -> None:
    """Run the whole service on this machine until Ctrl-C."""
    from service.migrate import upgrade

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = Config.from_env()
    config.var_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    redis = None
    if "TRAINQ_BROKER_URL" not in os.environ:
        redis = RedisServer(EMBEDDED_REDIS_PORT, config.var_dir / "redis", appendonly=True)
        redis.start()
        env["TRAINQ_BROKER_URL"] = redis.url
    env["TRAINQ_DATABASE_URL"] = config.database_url
    env["TRAINQ_VAR_DIR"] = str(config.var_dir)
    try:
        upgrade(config.database_url)
        gpu = cuda_available()
        workers = concurrency or max(1, os.cpu_count() or 1)
        components = build_components(config, env, host, port, workers, gpu)
    except BaseException:
        if redis is not None:
            redis.stop()
        raise
    url = f"http://{host}:{port}"
    message = (
        f"trainq is up: web pages {url}/, API {url}/api/v1  (database {config.database_url},"
        f" broker {env['TRAINQ_BROKER_URL']}, {workers} CPU worker process(es)"
        f"{', GPU worker' if gpu else ''}). Ctrl-C stops it."
    )
    Supervisor(components, redis).run(message)
