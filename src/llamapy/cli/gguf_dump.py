"""`llamapy-gguf FILE`: a GGUF file's metadata and tensor table, laid out like gguf-dump."""
from __future__ import annotations

import json

import click

from llamapy.cli.common import fail, run_command, version_option

PREVIEW_ITEMS = 8  # array values shown inline before eliding


def _value_type_label(field) -> str:
    if field.element_type is not None:
        return f"[{field.element_type.name}]"
    return field.type.name


def _preview(field) -> str:
    value = field.value
    if field.element_type is None:
        return repr(value) if isinstance(value, str) else str(value)
    items = list(value[:PREVIEW_ITEMS])
    shown = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in items)
    return f"[{shown}{', ...' if len(value) > PREVIEW_ITEMS else ''}]"


def _count(field) -> int:
    return 1 if field.element_type is None else len(field.value)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--no-tensors", is_flag=True, help="Metadata only.")
@click.option("--json", "as_json", is_flag=True, help="Metadata (scalars) and tensors as JSON.")
@version_option()
def gguf_dump(path, no_tensors, as_json):
    """Print the metadata and tensor table (name, type, shape, bytes) of the GGUF file PATH."""
    from llamapy.gguf import GGUFError, GGUFReader, type_name
    try:
        reader = GGUFReader(path)
    except FileNotFoundError:
        fail(f"{path}: no such file")
    except (GGUFError, OSError) as e:
        fail(str(e))

    if as_json:
        meta = {k: (f.value if f.element_type is None else {"type": f.element_type.name, "count": _count(f)})
                for k, f in reader.fields.items()}
        tensors = [{"name": t.name, "type": type_name(t.type), "shape": list(t.shape), "bytes": t.n_bytes,
                    "offset": t.data_offset} for t in reader.tensors]
        click.echo(json.dumps({"version": reader.version, "alignment": reader.alignment, "metadata": meta,
                               "tensors": tensors}, indent=1))
        return

    echo = click.echo
    echo(f"* File {path}: GGUF v{reader.version}, alignment {reader.alignment}, data at {reader.data_offset}")
    echo(f"* Dumping {len(reader.fields) + 3} key/value pair(s)")
    header = [("UINT32", 1, "GGUF.version", reader.version), ("UINT64", 1, "GGUF.tensor_count", len(reader.tensors)),
              ("UINT64", 1, "GGUF.kv_count", len(reader.fields))]
    rows = header + [(_value_type_label(f), _count(f), k, _preview(f)) for k, f in reader.fields.items()]
    for i, (label, count, key, value) in enumerate(rows, 1):
        echo(f"{i:7d}: {label:<10} | {count:8d} | {key} = {value}")
    if no_tensors:
        return
    total = sum(t.n_bytes for t in reader.tensors)
    n_params = sum(t.n_elements for t in reader.tensors)
    echo(f"* Dumping {len(reader.tensors)} tensor(s): {n_params:,} parameters, {total / 2**20:.2f} MiB")
    for i, t in enumerate(reader.tensors, 1):
        dims = ", ".join(f"{d:5d}" for d in tuple(t.shape) + (1,) * (4 - len(t.shape)))
        echo(f"{i:7d}: {t.n_elements:10d} | {dims} | {type_name(t.type):<7} | {t.n_bytes:11d} | {t.name}")


def main(argv=None):
    run_command(gguf_dump, "llamapy-gguf", argv)


if __name__ == "__main__":
    main()
