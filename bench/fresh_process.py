"""A function run in a new (spawned) process, its result or its exception handed back: the benches measure each
method's peak memory in a process of its own, and a child can be killed when a time budget runs out.
"""

from __future__ import annotations

import traceback
from multiprocessing import get_context


def in_fresh_process(function, *args):
    """``function(*args)`` in a new (spawned) process: its result, or its exception raised here.

    Interrupted while it waits (Ctrl-C, or ``bench.gpu_check`` stopping a case at its deadline), this kills the
    child instead of waiting for it: a 7B step loop would otherwise run on past any time budget.
    """
    context = get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_run_and_send, args=(send, function, args), daemon=True)
    child.start()
    send.close()  # the child holds the only writing end: a child that dies makes recv() raise EOFError
    try:
        status, value = receive.recv()
    except EOFError:
        child.join()
        raise RuntimeError(f"the process running {function.__name__} died (exit code {child.exitcode})") from None
    except BaseException:
        child.kill()
        raise
    finally:
        child.join()
        receive.close()
    if status == "error":
        raise value
    return value


def _run_and_send(send, function, args):
    """The child's side of in_fresh_process: send ("ok", result) or ("error", exception with its traceback)."""
    try:
        reply = ("ok", function(*args))
    except BaseException as error:  # noqa: BLE001 (re-raised in the parent)
        error.add_note(f"in the fresh process:\n{traceback.format_exc()}")
        reply = ("error", error)
    try:
        send.send(reply)
    except Exception as unpicklable:  # an exception that cannot be pickled still arrives, as text
        send.send(("error", RuntimeError(f"{reply[1]!r} (not picklable: {unpicklable})")))
    send.close()
