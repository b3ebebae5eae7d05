"""Pieces every llamapy command shares: the --version text and one-line error exits."""
from __future__ import annotations

import sys

import click


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
