"""Runs ``python -m gan_lightning`` command lines for the tests, each in its own process, forked from this one.

This process imports the CLI once (torch, Lightning, Hydra and the config schemas: most of a short run's start-up
time), then reads one request per line on stdin: ``{"args", "env", "cwd", "stdout", "stderr", "timeout"}``. For
each it forks a child that takes the request's environment, working directory and command line, writes its output
to the request's files and runs the CLI's ``main()`` exactly as ``python -m gan_lightning`` does, up to what a normal
interpreter exit shows (exit status, ``atexit`` handlers, buffered files; not the teardown of every module). The
child's exit status (or ``null`` after a timeout, when the child was killed) goes back as one line of JSON.

What a child cannot show: warnings emitted while modules are imported (they happen here, once). Tests about the
console of a fresh interpreter run ``python -m gan_lightning`` itself (``run_cli(..., fresh=True)``).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import threading
import time
import traceback

import gan_lightning.__main__ as cli

control = os.fdopen(os.dup(1), "w")  # replies go here; fd 1 and 2 become each child's output files


def serve() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            child(request)  # never returns
        deadline = time.monotonic() + request["timeout"]
        status = None
        while status is None:
            done, raw = os.waitpid(pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(raw)
            elif time.monotonic() > deadline:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            else:
                time.sleep(0.02)
        control.write(json.dumps({"returncode": status}) + "\n")
        control.flush()


def child(request: dict) -> None:
    os.setpgid(0, 0)  # a timeout kills the child and whatever it started
    control.close()
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    for fd, path in ((0, os.devnull), (1, request["stdout"]), (2, request["stderr"])):
        target = os.open(path, os.O_RDONLY if fd == 0 else os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    sys.argv = [cli.__file__, *request["args"]]
    code = 0
    try:
        cli.main()
    except SystemExit as stop:  # what `python -m gan_lightning` would exit with
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if stop.code is not None and not isinstance(stop.code, int):
            print(stop.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - an uncaught exception of any kind: its traceback and status 1, as Python would
        traceback.print_exc()
        code = 1
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)  # threads to join first (e.g. a process pool's manager): the interpreter's own exit does it
    # a normal exit's observable part: atexit handlers, flushed files; the interpreter's teardown of every module
    # (a second or more with torch loaded) is left out
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    serve()
