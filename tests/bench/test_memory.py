"""How the bench measures a process tree's memory: real processes and threads, read from /proc."""

from __future__ import annotations

import subprocess
import sys
import threading

from tests.support.pipeline import _same_memory, tree_rss_bytes

MIB = 1024**2
# A child that forks a grandchild, then each touches memory of its own: 200 and 100 MiB.
TREE = """
import os, sys, time
if os.fork() == 0:
    own = bytearray(100 * 1024 * 1024)
    time.sleep(60)
    os._exit(0)
held = bytearray(200 * 1024 * 1024)
time.sleep(1)
print("ready", flush=True)
time.sleep(60)
"""


def test_threads_share_an_address_space_and_forked_processes_do_not() -> None:
    started, done = threading.Event(), threading.Event()
    thread_id: list[int] = []

    def hold() -> None:
        thread_id.append(threading.get_native_id())
        started.set()
        done.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        started.wait(10)
        assert _same_memory(thread_id[0], threading.get_native_id())
        assert not _same_memory(child.pid, threading.get_native_id())
    finally:
        done.set()
        thread.join()
        child.kill()
        child.wait()


def test_a_tree_counts_each_forked_process_it_holds() -> None:
    tree = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    try:
        assert tree.stdout is not None and tree.stdout.readline().strip() == "ready"
        # 200 MiB in the child plus the grandchild's own 100 MiB, each counted once.
        assert 300 * MIB <= tree_rss_bytes(tree.pid) < 500 * MIB
    finally:
        tree.kill()
        tree.wait()
