"""A pipeline process kept running the way systemd's `Restart=on-failure` keeps a unit running:
after any exit other than 0 (a SIGKILL included) it is started again after `restart_delay_s`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from tests.support.pipeline import Process

log = logging.getLogger(__name__)


class Supervised:
    """`python -m module` under supervision; logs of every start go to one file."""

    def __init__(
        self,
        module: str,
        env: Mapping[str, str],
        log_path: Path,
        restart_delay_s: float,
        max_restarts: int = 10,
    ) -> None:
        self.module = module
        self.env = dict(env)
        self.log_path = log_path
        self.restart_delay_s = restart_delay_s
        self.max_restarts = max_restarts
        self.restarts = 0
        self.exits: list[int] = []
        self.started_at: list[float] = []  # time.time() of every start
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._process = self._start()
        self._watcher = threading.Thread(target=self._watch, name=f"supervise-{module}", daemon=True)
        self._watcher.start()

    def _start(self) -> Process:
        self.started_at.append(time.time())
        return Process(self.module, self.env, self.log_path)

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            with self._lock:
                status = self._process.popen.poll()
                if status is None or self._stopping.is_set():
                    continue
                self.exits.append(status)
                if status == 0 or self.restarts >= self.max_restarts:
                    log.warning("%s exited with %s; not restarted", self.module, status)
                    return
            log.warning("%s exited with %s; restarting in %.1fs", self.module, status, self.restart_delay_s)
            if self._stopping.wait(self.restart_delay_s):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self.restarts += 1
                self._process = self._start()

    @property
    def process(self) -> Process:
        with self._lock:
            return self._process

    def alive(self) -> bool:
        return self.process.alive()

    def kill(self) -> int:
        """SIGKILL the current process group (the supervisor then restarts it)."""
        return self.process.kill()

    def wait_restarted(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.restarts >= count and self.alive():
                return True
            time.sleep(0.2)
        return False

    def state(self) -> str:
        """alive / restarted (alive, after restarts) / dead (exit status)."""
        if not self.alive():
            return f"dead({self.process.popen.returncode})"
        return "restarted" if self.restarts else "alive"

    def stop(self) -> None:
        self._stopping.set()
        self._watcher.join(timeout=5)
        with self._lock:
            self._process.stop()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
