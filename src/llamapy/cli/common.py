"""Pieces every llamapy command shares: the --version text and one-line error exits."""
from __future__ import annotations

import os
import re
import sys

import click


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "'": "'", '"': '"', "\\": "\\"}
_HEX2 = re.compile(r"[0-9A-Fa-f]{2}")


def version_text() -> str:
    from llamapy import __version__
    from llamapy.runtime import system_info
    return f"llamapy {__version__}\n{system_info()}"


def _print_version(ctx, _param, value):
    if value:
        import_kernels()
        click.echo(version_text())
        ctx.exit()


def version_option():
    """--version for every command: version, CPU features found and the kernel path chosen."""
    return click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
                        help="Show the version, CPU features and kernels, and exit.")


def fail(message: str, code: int = 1):
    """Print `error: message` on one line to stderr and exit non-zero: bad input never gets a traceback."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def import_kernels():
    """Load the kernels, turning a bad $LLAMAPY_CPU or a missing build into a one-line error."""
    try:
        from llamapy._kernels import _ops
    except ValueError as e:
        fail(str(e))
    except ImportError as e:
        fail(f"llamapy's compiled kernels are missing ({e}); reinstall with `pip install .`")
    return _ops


def one_line(e: BaseException) -> str:
    """An exception's message folded onto one line."""
    return " ".join(str(e).split()) or type(e).__name__


def run_command(command: click.Command, prog_name: str, argv=None):
    """Run a click command as a program: every usage error or failure is one `error: ...` line and exit 1.

    LLAMAPY_TRACEBACK=1 lets unexpected exceptions through with their traceback, for debugging.
    """
    try:
        rv = command.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:  # a bare group name: show its help, as click would
        click.echo(e.ctx.get_help())
        sys.exit(0)
    except click.ClickException as e:  # usage errors included
        fail(one_line(Exception(e.format_message())))
    except click.Abort:
        click.echo("Interrupted by user", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(1)
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001 - never a traceback for the user
        if os.environ.get("LLAMAPY_TRACEBACK"):
            raise
        fail(f"{type(e).__name__}: {one_line(e)}")
    sys.exit(rv if isinstance(rv, int) else 0)


def resolve_model(model: str | None) -> str:
    """-m as given (checked to be a file), or the cached default model when -m is left out."""
    if model is None:
        from llamapy.models import ModelFetchError, model_path
        try:
            return str(model_path("smollm2"))
        except ModelFetchError as e:
            fail(f"no -m given and the default model is unavailable: {e}")
    if not os.path.exists(model):
        fail(f"failed to load model '{model}': file does not exist")
    if os.path.isdir(model):
        fail(f"failed to load model '{model}': is a directory")
    return model


def process_escapes(text: str) -> str:
    """llama.cpp's string_process_escapes: \\n \\r \\t \\' \\" \\\\ and \\xHH; other escapes stay as typed."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            nxt = text[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
                continue
            if nxt == "x" and _HEX2.fullmatch(text[i + 2:i + 4]):
                out.append(chr(int(text[i + 2:i + 4], 16)))
                i += 4
                continue
            out.append("\\" + nxt)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)
