"""How every command-line program of the project ends (plotting.py, evaluate.py, bench/*): bad
arguments or a missing input are one line and exit 2 before any work, a fault is one line and exit
1, Ctrl-C is one line and exit 130; a traceback only with --DEBUG=True. ppo.py keeps the same
promise with more exit codes (machinery/exits.py). Imports nothing heavy, so a refusal is quick."""
import argparse
import os
import shlex
import sys


class Refusal(Exception):
    """Bad settings or inputs, found before any expensive work: said in one line that names what to
    change, exit 2."""


def debug_requested(argv):
    """--DEBUG=True (any case) among the arguments, read before any setting is parsed, so that a
    refusal while parsing shows its traceback."""
    return any(a.split("=", 1)[1].strip().lower() == "true" for a in argv
               if a.startswith("--DEBUG="))


def first_line(error):
    """The first line of an exception's message ("" if it has none): what a one-line refusal quotes
    of it."""
    return str(error).splitlines()[0] if str(error) else ""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line ("error: ... (see --help)") and exit 2, instead of
    the usage block and a second line."""

    def error(self, message):
        print(f"error: {self.prog}: {message} (see python {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def run(main, argv=None):
    """Calls main(argv) without --DEBUG=True and returns its exit code: a Refusal is one line and 2,
    any other exception one line and 1, Ctrl-C 130; --DEBUG=True lets the traceback through."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = debug_requested(argv)
    argv = [a for a in argv if not a.startswith("--DEBUG=")]
    try:
        return main(argv) or 0
    except SystemExit as e:  # argparse's --help (0) and ArgumentParser.error (2)
        return e.code if isinstance(e.code, int) else (print(f"error: {e.code}", file=sys.stderr)
                                                       or 1)
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            raise
        refused = isinstance(e, Refusal)
        message = first_line(e) if refused else f"{type(e).__name__}: {first_line(e)}"
        print(f"error: {message}" + ("" if refused else " (--DEBUG=True shows the traceback)"),
              file=sys.stderr)
        return 2 if refused else 1


def script_path(name):
    """The path of one of the project's scripts as the user can paste it where they ran the
    program: sys.argv[0] as they typed it when it is that script, else the absolute path."""
    given = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if os.path.basename(given) == name and os.path.isfile(given):
        return given
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), name)


def command(words):
    """A command line the user can paste into a POSIX shell: every word quoted where it needs it."""
    return shlex.join(str(w) for w in words)
