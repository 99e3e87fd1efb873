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
        return f"pyro-vae: interrupted by {name}; the last checkpoint is intact.", 128 + signum
    return f"pyro-vae: interrupted by {name} during start-up; nothing was written.", 128 + signum


def main(argv: list[str] | None = None) -> int:
    """The program: SIGTERM handled first, then the CLI imported and run. The handler stays for
    the life of the process (this is the program's own entry, not a library call)."""
    signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        from pyro_vae import cli

        return cli.main(argv)
    except KeyboardInterrupt as err:  # landed while the CLI's modules were imported
        message, code = interrupted_message(err, began=False)
        print(message, file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
