"""Run a compiler job in a child process, so that a crash inside TVM is an error, not the user's loss.

TVM's importer and code generators are C++; a malformed model can make them abort or segfault,
which would kill the Python process that called them. The command line therefore runs each
compile in a fresh interpreter (``python -m edgec.isolation``):

* the child reports its stage (:mod:`edgec.progress`) and finally its result, or its error, as
  JSON lines on a private pipe;
* its own stdout and stderr come back through the parent, which passes on edgec's progress lines
  (everything with ``--debug``) and drops TVM's chatter, so a failure stays one line;
* a child killed by a signal becomes a :class:`~edgec.errors.CompileError` that names the stage,
  down to the ONNX node being converted;
* Ctrl-C (or SIGTERM) in the parent is passed on once; the child unwinds, removing its temporary
  files, and the parent waits for it before it exits.

A fresh interpreter rather than ``fork``: TVM's thread pool and PyTorch's OpenMP runtime do not
survive a fork in a process that has already used them.
"""

from __future__ import annotations

import collections
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import traceback

from edgec import errors

# Ctrl-C reached the child: give it this long to remove its temporary files.
_UNWIND_S = 30


class InternalCompilerError(Exception):
    """A bug (not a bad input) in the child: an exception that is not an EdgecError."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def call(function: str, request: dict, *, debug: bool = False, chatty: bool = False,
         writes_into: tuple[str, ...] = ()) -> dict:
    """Run ``module:function(request)`` in a child interpreter; return its JSON-able result.

    Raises the child's :class:`~edgec.errors.EdgecError` as the same class, a CompileError when the
    child crashed, :class:`InternalCompilerError` for a bug, KeyboardInterrupt when interrupted.
    The child's temporary files live in a private folder removed when it ends, and its atomic
    writes' temporary files in ``writes_into`` are removed if it dies mid-write.
    """
    scratch = tempfile.mkdtemp(prefix="edgec-job-")
    try:
        return _call(function, request, debug, chatty, scratch, writes_into)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _call(function, request, debug, chatty, scratch, writes_into) -> dict:
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgec.isolation", function, str(write_fd)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        pass_fds=(write_fd,), start_new_session=True,  # signals reach it only through us
        env={**os.environ, "TMPDIR": scratch},
    )
    os.close(write_fd)
    chatter: collections.deque[str] = collections.deque(maxlen=40)
    relay = threading.Thread(target=_relay_output, args=(proc.stdout, debug, chatter), daemon=True)
    relay.start()
    stage, outcome = "starting", None
    messages = os.fdopen(read_fd, "r", encoding="utf-8")
    previous_term = _forward_sigterm(proc)
    try:
        proc.stdin.write(json.dumps({"request": request, "debug": debug, "chatty": chatty}).encode())
        proc.stdin.close()
        for line in messages:
            message = json.loads(line)
            if "stage" in message:
                stage = message["stage"]
            else:
                outcome = message
        proc.wait()
    except KeyboardInterrupt:
        _interrupt(proc)
        outcome = _last_outcome(messages, outcome)
        if not (outcome and "result" in outcome):
            raise
        # the child had finished (artifact written) before the interrupt reached it: that stands
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        relay.join(timeout=5)
        messages.close()
        if proc.returncode != 0:
            _remove_leftovers(proc.pid, writes_into)
    return _result(proc.returncode, outcome, stage, chatter, debug)


def _remove_leftovers(pid: int, folders) -> None:
    from edgec.artifact import temp_prefix

    prefix = temp_prefix(pid)
    for folder in folders:
        for name in os.listdir(folder) if os.path.isdir(folder) else []:
            if name.startswith(prefix):
                try:
                    os.unlink(os.path.join(folder, name))
                except OSError:
                    pass


def _last_outcome(messages, outcome):
    """After the child exited: the rest of its messages, for a result that raced the interrupt."""
    try:
        for line in messages:
            message = json.loads(line)
            if "stage" not in message:
                outcome = message
    except (OSError, ValueError):
        pass
    return outcome


def _result(returncode: int, outcome: dict | None, stage: str, chatter, debug: bool) -> dict:
    if outcome and "result" in outcome:
        return outcome["result"]
    if outcome and "error" in outcome:
        raise _rebuild(outcome["error"])
    if outcome and outcome.get("interrupted"):
        raise KeyboardInterrupt
    if returncode < 0:
        name = signal.Signals(-returncode).name
        hint = "" if debug else "; rerun with --debug to see its last output"
        raise errors.CompileError(
            f"the compiler crashed ({name}) during {stage}. This is a bug in edgec or TVM, not in your "
            f"command: please report it with the model{hint}")
    raise errors.CompileError(f"the compiler process exited with code {returncode} during {stage} "
                              f"without a result: {(list(chatter) or ['no output'])[-1].strip()}")


def _rebuild(error: dict) -> Exception:
    cls = getattr(errors, error["type"], None)
    if isinstance(cls, type) and issubclass(cls, errors.EdgecError):
        err = cls.__new__(cls)
        Exception.__init__(err, error["message"])  # the child already built the one-line message
        return err
    return InternalCompilerError(error["type"], error["message"])


def _relay_output(stream, debug: bool, chatter) -> None:
    for raw in stream:
        line = raw.decode("utf-8", errors="replace")
        chatter.append(line)
        if debug or line.startswith("edgec: "):
            sys.stderr.write(line)
            sys.stderr.flush()


def _interrupt(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=_UNWIND_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _forward_sigterm(proc: subprocess.Popen):
    def stop(signum, frame):
        raise KeyboardInterrupt  # unwinds through call(), which interrupts the child and waits

    try:
        return signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave SIGTERM alone
        return signal.getsignal(signal.SIGTERM)


# -- the child -------------------------------------------------------------------------------------


def _child_main(function: str, fd: int) -> int:
    channel = os.fdopen(fd, "w", encoding="utf-8", buffering=1)

    def send(message: dict) -> None:
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    payload = json.load(sys.stdin)
    debug = payload["debug"]
    from edgec.cli import setup_logging

    setup_logging(debug, payload["chatty"])
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # unwind, removing temporary files

    from edgec import progress

    progress.listen(lambda text: send({"stage": text}))
    module_name, _, attr = function.partition(":")
    if not module_name.startswith("edgec."):
        raise SystemExit(f"edgec.isolation runs edgec functions only, not {function}")
    try:
        result = getattr(importlib.import_module(module_name), attr)(payload["request"])
    except errors.EdgecError as err:
        if debug:
            traceback.print_exc()
        send({"error": {"type": type(err).__name__, "message": str(err)}})
        return err.exit_code
    except KeyboardInterrupt:
        send({"interrupted": True})
        return 130
    except BaseException as err:  # noqa: BLE001 - a bug; the parent reports it in one line
        traceback.print_exc()
        lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
        send({"error": {"type": type(err).__name__, "message": (lines[-1] if lines else "")[:400]}})
        return 1
    send({"result": result})
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1], int(sys.argv[2])))
