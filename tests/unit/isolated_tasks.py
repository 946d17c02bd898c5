"""Tasks for the isolated executor's engine tests (no Django): the initializer returns
the resolver, as scheduler_app.backends.procinit does for the real app."""

import os
import socket
import subprocess
import sys
import time

TASKS = {}


def task(func):
    TASKS[func.__name__] = func
    return func


def setup():
    return TASKS.__getitem__


@task
def environment(token=None):
    return {
        "env": dict(os.environ),
        "cwd": os.getcwd(),
        "uid": os.getuid(),
        "argv": sys.argv,
        "pid": os.getpid(),
    }


@task
def allocate(mb):
    block = bytearray(mb * 1024 * 1024)
    return len(block)


@task
def spin(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return "done"


@task
def sleep(seconds):
    time.sleep(seconds)
    return "slept"


@task
def open_files(n):
    handles = [open(os.devnull) for _ in range(n)]
    return len(handles)


@task
def leave_grandchild(marker):
    child = subprocess.Popen(
        [sys.executable, "-c", f"import time; open({marker!r}, 'w').write('x'); time.sleep(60)"]
    )
    return child.pid


@task
def set_global(value):
    global LEAK
    previous = globals().get("LEAK")
    LEAK = value
    return previous


@task
def connect(port):
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return "connected"
