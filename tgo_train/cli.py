"""The programs' command-line edge: every error as one line on stderr and a non-zero exit.

``run(main)`` replaces ``absl.app.run(main)``. A failure prints ``error: <one line>`` (the field, its value
and what is allowed, for a config error) and exits with status 1; ``--verbose`` or ``TGO_DEBUG=1`` in the
environment shows the full traceback instead. Flag errors keep absl's own short message. A background
thread's failure is one ``warning:`` line, not a traceback.

Exit statuses: 0 done; 1 an error (one line); 75 training stopped by SIGTERM or SIGINT after saving a
checkpoint (``tgo_train.preemption``: rerun the same command to resume); 130 interrupted by Ctrl-C
outside training, nothing more saved; absl's own for a bad flag. SIGTERM outside training ends the
program at once (nothing to save; the next program on its workdir takes its lock over, saying so).
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Callable, Optional, Sequence

from absl import app, flags
from absl import logging as absl_logging

from tgo_train import config_check, preemption

DEBUG_ENV = "TGO_DEBUG"
EXIT_ERROR = 1

_VERBOSE = flags.DEFINE_bool("verbose", False, f"show the full traceback of an error (or set {DEBUG_ENV}=1)")


def debugging(argv: Optional[Sequence[str]] = None) -> bool:
    """True when tracebacks are wanted: ``TGO_DEBUG`` set (not 0/empty) or ``--verbose`` given."""
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        return True
    if flags.FLAGS.is_parsed():
        return _VERBOSE.value
    return any(arg in ("--verbose", "-verbose", "--verbose=true", "--verbose=True") for arg in argv or ())


def fail(message: str) -> None:
    """Prints ``error: message`` to stderr and exits non-zero."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_ERROR)


def run(main: Callable, argv: Optional[Sequence[str]] = None, *, help_epilog: str = "") -> None:
    """``absl.app.run(main)`` with one-line errors (see the module docstring).

    ``--help`` prints the program's docstring (``main``'s module), then ``help_epilog``, then its flags.
    """
    argv = list(sys.argv if argv is None else argv)
    argv = argv[:1] + ["--help" if arg == "-h" else arg for arg in argv[1:]]  # absl knows -? but not -h
    if any(arg in HELP_FLAGS for arg in argv[1:]):
        _prepare_help(main, argv[0], help_epilog)
    app.run(_guarded(main, argv), argv=argv, flags_parser=_parse_flags)


HELP_FLAGS = ("-?", "--help", "-help", "--helpshort", "-helpshort")
SHARED_FLAG_MODULES = (__name__, "tgo_train.distributed")  # --verbose; --distributed and its companions


def _prepare_help(main: Callable, argv0: str, epilog: str) -> None:
    """Makes absl's ``--help`` describe the program, also when run as a console script.

    absl prints ``__main__``'s docstring and the flags defined in ``__main__`` (keyed by ``argv[0]``); a
    console script's ``__main__`` is the installed wrapper, which has neither. So the program module's
    docstring (plus ``epilog``) becomes ``__main__``'s, and its flags and the shared ones become key flags
    of ``argv[0]``.
    """
    program = sys.modules[main.__module__]
    sys.modules["__main__"].__doc__ = "\n\n".join(filter(None, ((program.__doc__ or "").strip(), epilog))) + "\n"
    owners = {argv0 if main.__module__ == "__main__" else main.__module__, *SHARED_FLAG_MODULES}
    for owner, owned in flags.FLAGS.flags_by_module_dict().items():
        if owner in owners:
            for flag in owned:
                flags.FLAGS.register_key_flag_for_module(argv0, flag)


def _parse_flags(argv: Sequence[str]):
    try:
        return app.parse_flags_with_usage(argv)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - ml_collections raises plain errors for --config.KEY overrides
        if debugging(argv):
            raise
        fail(config_check.explain_override_error(argv, e))


def _guarded(main: Callable, full_argv: Sequence[str]) -> Callable:
    def guarded(argv):
        if not debugging(argv):
            _quiet_background_errors()
        try:
            return main(argv)
        except (app.UsageError, SystemExit):
            raise
        except KeyboardInterrupt:  # Ctrl-C outside training (training saves first: preemption.Preempted)
            if debugging(argv):
                raise
            print("interrupted (Ctrl-C): stopped without saving", file=sys.stderr, flush=True)
            sys.exit(preemption.EXIT_INTERRUPTED)
        except preemption.Preempted as e:
            print(e, file=sys.stderr, flush=True)
            sys.exit(e.exit_status)
        except Exception as e:  # noqa: BLE001 - every failure becomes one line unless debugging
            if debugging(argv):
                raise
            fail(config_check.explain_load_error(full_argv, e) or config_check.one_line(e))

    return guarded


def _quiet_background_errors() -> None:
    """Background failures without tracebacks: a thread's as one warning line, orbax's and asyncio's error logs
    and the exceptions Python ignores (a closed event loop's) not at all. When they matter, the main thread meets
    the same error and prints it as the program's one ``error:`` line; ``--verbose`` shows them all."""
    threading.excepthook = _quiet_thread_error
    sys.unraisablehook = lambda unraisable: None
    absl_logging.get_absl_handler().addFilter(_not_a_background_error)


def _not_a_background_error(record: logging.LogRecord) -> bool:
    """False for an error logged by orbax's writer threads or by asyncio (a task's exception in them)."""
    from_background = record.name == "asyncio" or f"{os.sep}orbax{os.sep}" in (record.pathname or "")
    return not (record.levelno >= logging.ERROR and from_background)


def _quiet_thread_error(args) -> None:
    """A background thread's failure (a writer meeting a full disk) as one warning line, not a traceback."""
    if args.exc_type is SystemExit:
        return threading.__excepthook__(args)
    name = args.thread.name if args.thread is not None else "a background thread"
    print(f"warning: {name} failed: {config_check.one_line(args.exc_value)}", file=sys.stderr, flush=True)
