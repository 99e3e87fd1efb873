"""The ``pyro-vae`` program's first statements: SIGTERM is an interruption, like SIGINT, from
the first instant, before the 1-3 s of importing torch and Pyro.

A signal's outcome must not depend on when it lands. Python itself turns SIGINT into
``KeyboardInterrupt`` as soon as the interpreter is up; SIGTERM, left alone, kills the process
silently (exit status -15) until a handler is installed. So the console script
(``[project.scripts]``) and ``python -m pyro_vae.cli`` both start here: this module imports only
the standard library (``pyro_vae/__init__`` imports lazily), installs the SIGTERM handler, and
only then imports the CLI, which imports torch when it builds its parser. A signal that lands
before the command has begun prints one sentence and exits 128 + signal number (130 for SIGINT,
143 for SIGTERM), as the shell reports a process killed by that signal; nothing was written.

The handler is installed by :func:`main`, never on import: a library changes no process state.
"""

from __future__ import annotations

import os
import signal
import sys

from pyro_vae.errors import Interrupted


def raise_interrupted(signum, frame):
    """SIGTERM's handler: raise :class:`Interrupted`, a ``KeyboardInterrupt``, at the next Python
    instruction, as Python's own handler does for SIGINT."""
    raise Interrupted(signum)


def interrupted_message(err: KeyboardInterrupt, began: bool) -> tuple[str, int]:
    """The sentence and exit code for an interruption outside the trainer (which saves a
    checkpoint and says so itself). ``began``: whether the command had started its work."""
    signum = getattr(err, "signum", signal.SIGINT)
    name = signal.Signals(signum).name
    if began:
        # evaluate, plot and sample are interrupted here too (not only train): say what holds for every command
        return (f"pyro-vae: interrupted by {name}; no file was left half-written (each is written whole or not "
                "at all).", 128 + signum)
    return f"pyro-vae: interrupted by {name} during start-up; nothing was written.", 128 + signum


def exit_during_start_up(signum, frame):
    """SIGTERM's and SIGINT's handler while torch, numpy and Pyro are imported: say so and end
    the process at once. Raising there instead would abandon a half-initialised module (a
    signal inside numpy's import left ``numpy`` without ``multiply``, and the next import
    failed with an AttributeError traceback); nothing has been written yet, so there is
    nothing to clean up."""
    message, code = interrupted_message(Interrupted(signum), began=False)
    os.write(2, (message + "\n").encode())
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    """The program: SIGTERM and SIGINT handled first, the heavy modules imported under a handler
    that exits at once, then the CLI run with SIGTERM raising :class:`Interrupted` (like SIGINT's
    ``KeyboardInterrupt``), which the CLI and the trainer turn into a saved checkpoint and a
    sentence. The handlers stay for the life of the process (this is the program's own entry,
    not a library call)."""
    sigint = signal.getsignal(signal.SIGINT)  # SIG_IGN in a background job of a script: keep it so
    signal.signal(signal.SIGTERM, exit_during_start_up)
    if sigint is signal.default_int_handler:
        signal.signal(signal.SIGINT, exit_during_start_up)
    try:
        import pyro  # noqa: F401  (torch and numpy with it: the imports a signal must not cut in half)

        from pyro_vae import cli
    finally:
        signal.signal(signal.SIGTERM, raise_interrupted)
        signal.signal(signal.SIGINT, sigint)
    try:
        code = cli.main(argv)
        sys.stdout.flush()  # what is still buffered meets a closed pipe here, not at exit
        return code
    except KeyboardInterrupt as err:  # landed before the command's own handling began
        message, code = interrupted_message(err, began=False)
        print(message, file=sys.stderr)
        return code
    except BrokenPipeError:  # `pyro-vae compare SWEEP | head`: the reader has gone; as the shell's tools, end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush writes nowhere
        return 128 + signal.SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
