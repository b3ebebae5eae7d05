"""JSON schema -> GBNF, for ``-j/--json-schema`` and ``LlamaGrammar.from_json_schema``.

    gbnf = json_schema_to_gbnf('{"type": "object", "properties": {"age": {"type": "integer"}}}')

The subset llama.cpp's converter handles (common/json-schema-to-grammar.cpp): ``type`` (one or a list),
``properties`` / ``required`` / ``additionalProperties`` (false unless given, as llama.cpp: faster grammars
and fewer invented keys), ``items`` / ``prefixItems`` / ``minItems`` / ``maxItems``, ``enum``, ``const``,
``anyOf`` / ``oneOf``, ``allOf`` of objects, ``minLength`` / ``maxLength``, string ``format`` date, time,
date-time and uuid, integer ``minimum`` / ``maximum`` / ``exclusiveMinimum`` / ``exclusiveMaximum``, and
local ``$ref`` (``#/$defs/...``, ``#/definitions/...``, any JSON pointer into the schema).
A ``pattern`` is not translated: such strings accept any text, with a warning (as llama.cpp does for
patterns it cannot handle). Unknown keywords are ignored.

Output layout: values carry no whitespace of their own; separators do (``space "," space``), so the
grammar ends right after the closing bracket and generation stops there.
"""
from __future__ import annotations

import json
import re
import warnings

__all__ = ["json_schema_to_gbnf", "SchemaError"]


class SchemaError(ValueError):
    """A JSON schema that cannot be turned into a grammar."""

    def __init__(self, message: str):
        super().__init__(f"JSON schema error: {message}")


# Building blocks, added to the grammar only when used. Whitespace between tokens: at most one line
# break plus some indentation, so the output cannot run away in blanks.
_PRIMITIVES = {
    "space": ('( " " | "\\n" [ \\t]{0,20} )?', ()),
    "char": ('[^"\\\\\\x00-\\x1F\\x7F] | "\\\\" ( ["\\\\/bfnrt] | "u" [0-9a-fA-F]{4} )', ()),
    "string": ('"\\"" char* "\\""', ("char",)),
    "integral-part": ('"0" | [1-9] [0-9]{0,15}', ()),
    "decimal-part": ("[0-9]{1,16}", ()),
    "integer": ('"-"? integral-part', ("integral-part",)),
    "number": ('"-"? integral-part ( "." decimal-part )? ( [eE] [-+]? integral-part )?',
               ("integral-part", "decimal-part")),
    "boolean": ('"true" | "false"', ()),
    "null": ('"null"', ()),
    "value": ("object | array | string | number | boolean | null",
              ("object", "array", "string", "number", "boolean", "null")),
    "object": ('"{" space ( string space ":" space value ( space "," space string space ":" space value )* '
               'space )? "}"', ("space", "string", "value")),
    "array": ('"[" space ( value ( space "," space value )* space )? "]"', ("space", "value")),
    "date": ('[0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [12] [0-9] | "3" [01] )', ()),
    "time": ('( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{3} )? '
             '( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )', ()),
    "date-time": ('date "T" time', ("date", "time")),
    "uuid": ('"\\"" [0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" '
             '[0-9a-fA-F]{12} "\\""', ()),
}
_FORMATS = {"date": "date", "time": "time", "date-time": "date-time"}
_INT64 = 2**63


def _literal(text: str) -> str:
    """A GBNF string literal for ``text``."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _json_literal(value) -> str:
    """The grammar for one constant JSON value, written compactly."""
    return _literal(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _repeat(item: str, lo: int, hi: int | None, sep: str = "") -> str:
    """item repeated lo..hi times (hi None: unbounded), joined by sep."""
    if hi == 0:
        return ""
    if not sep:
        if (lo, hi) == (0, 1):
            return f"{item}?"
        if (lo, hi) == (0, None):
            return f"{item}*"
        if (lo, hi) == (1, None):
            return f"{item}+"
        return f"{item}{{{lo},{'' if hi is None else hi}}}" if lo != hi else f"{item}{{{lo}}}"
    rest = _repeat(f"( {sep} {item} )", max(lo - 1, 0), None if hi is None else hi - 1)
    out = f"{item} {rest}".strip()
    return f"( {out} )?" if lo == 0 else out


# -- integer ranges -------------------------------------------------------------------------------

def _digits_range(lo: str, hi: str) -> str:
    """Numbers with the same digit count from lo to hi (strings of equal length, lo <= hi)."""
    if lo == hi:
        return _literal(lo)
    i = 0
    while lo[i] == hi[i]:
        i += 1
    prefix = _literal(lo[:i]) + " " if i else ""
    lo, hi = lo[i:], hi[i:]
    n = len(lo) - 1   # digits after the first differing one
    if n == 0:
        return f"{prefix}[{lo}-{hi}]"
    alts = []
    lo_rest_min = lo[1:] == "0" * n
    hi_rest_max = hi[1:] == "9" * n
    first_full = int(lo[0]) + (0 if lo_rest_min else 1)
    last_full = int(hi[0]) - (0 if hi_rest_max else 1)
    if not lo_rest_min:
        alts.append(f"{_literal(lo[0])} ( {_digits_range(lo[1:], '9' * n)} )")
    if first_full <= last_full:
        head = f"[{first_full}]" if first_full == last_full else f"[{first_full}-{last_full}]"
        alts.append(f"{head} [0-9]{{{n}}}" if n > 1 else f"{head} [0-9]")
    if not hi_rest_max:
        alts.append(f"{_literal(hi[0])} ( {_digits_range('0' * n, hi[1:])} )")
    body = " | ".join(alts)
    return f"{prefix}( {body} )" if prefix or len(alts) > 1 else body


def _nonneg_range(lo: int, hi: int | None) -> list[str]:
    """Alternatives for the integers lo..hi (lo >= 0; hi None: unbounded), without leading zeros."""
    alts = []
    if hi is None:
        n = len(str(lo))
        alts.append(_digits_range(str(lo), "9" * n))
        if n < 16:
            alts.append(f"[1-9] [0-9]{{{n},15}}")
        return alts
    for n in range(len(str(lo)), len(str(hi)) + 1):
        a = max(lo, 10 ** (n - 1) if n > 1 else 0)
        b = min(hi, 10 ** n - 1)
        if a <= b:
            alts.append(_digits_range(str(a), str(b)))
    return alts


def _int_range(lo: int | None, hi: int | None) -> str:
    alts = []
    if lo is None or lo < 0:                      # negative part: -(1..-lo)
        top = None if lo is None else -lo
        bottom = 1 if hi is None or hi >= 0 else -hi
        if top is None or bottom <= top:
            neg = _nonneg_range(bottom, top)
            alts.append('"-" ( ' + " | ".join(neg) + " )")
    if hi is None or hi >= 0:
        alts.extend(_nonneg_range(max(lo or 0, 0), hi))
    if not alts:
        raise SchemaError(f"integer range [{lo}, {hi}] is empty")
    return " | ".join(alts)


# -- the converter --------------------------------------------------------------------------------

class _Converter:
    def __init__(self, root_schema):
        self.root_schema = root_schema
        self.rules: dict[str, str] = {}
        self.refs: dict[str, str] = {}   # "$ref" -> rule name

    def add_rule(self, name: str, body: str) -> str:
        name = re.sub(r"[^a-zA-Z0-9-]+", "-", name).strip("-") or "rule"
        if name in _PRIMITIVES and name != "root":
            name += "-"
        key, i = name, 0
        while key in self.rules and self.rules[key] != body:
            i += 1
            key = f"{name}{i}"
        self.rules[key] = body
        return key

    def primitive(self, name: str) -> str:
        if name not in self.rules:
            body, deps = _PRIMITIVES[name]
            self.rules[name] = body
            for dep in deps:
                self.primitive(dep)
        return name

    def resolve_ref(self, ref: str):
        if not ref.startswith("#"):
            raise SchemaError(f"only local $ref (starting with '#') are supported, got {ref!r}")
        node = self.root_schema
        for part in ref[1:].split("/")[1:] if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                raise SchemaError(f"$ref {ref!r} points nowhere")
        return node

    def visit(self, schema, name: str) -> str:
        """The name of the rule for ``schema`` (added under ``name`` when new)."""
        if schema is True or schema == {}:
            return self.add_rule(name, self.primitive("value")) if name == "root" else self.primitive("value")
        if schema is False:
            raise SchemaError(f"schema at '{name}' is false: nothing can match it")
        if not isinstance(schema, dict):
            raise SchemaError(f"schema at '{name}' must be an object or a boolean, got {type(schema).__name__}")
        if "$ref" in schema:
            ref = schema["$ref"]
            if ref not in self.refs:
                rule = self.refs[ref] = self.add_rule(ref.split("/")[-1] or "ref", "")   # reserve: recursion
                self.rules[rule] = self.body(self.resolve_ref(ref), rule)
            return self.refs[ref] if name != "root" else self.add_rule("root", self.refs[ref])
        return self.add_rule(name, self.body(schema, name))

    def body(self, schema, name: str) -> str:
        """The right-hand side of the rule for ``schema``."""
        if schema is True or schema == {}:
            return self.primitive("value")
        if not isinstance(schema, dict):
            return self.visit(schema, name)
        if "$ref" in schema:
            return self.visit(schema, name + "-ref")
        if "const" in schema:
            return _json_literal(schema["const"])
        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list) or not values:
                raise SchemaError(f"'enum' at '{name}' must be a non-empty list")
            return " | ".join(_json_literal(v) for v in values)
        for key in ("anyOf", "oneOf"):
            if key in schema:
                alts = schema[key]
                if not isinstance(alts, list) or not alts:
                    raise SchemaError(f"'{key}' at '{name}' must be a non-empty list")
                return " | ".join(self.visit(alt, f"{name}-{i}") for i, alt in enumerate(alts))
        if "allOf" in schema:
            return self.all_of(schema["allOf"], name)
        kind = schema.get("type")
        if isinstance(kind, list):
            if not kind:
                raise SchemaError(f"'type' at '{name}' is an empty list")
            return " | ".join(self.visit({**schema, "type": k}, f"{name}-{k}") for k in kind)
        if kind is None:
            if "properties" in schema or "additionalProperties" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
            else:
                return self.primitive("value")
        if kind == "object":
            return self.object(schema, name)
        if kind == "array":
            return self.array(schema, name)
        if kind == "string":
            return self.string(schema, name)
        if kind == "integer":
            return self.integer(schema)
        if kind in ("number", "boolean", "null"):
            return self.primitive(kind)
        raise SchemaError(f"unknown type {kind!r} at '{name}'")

    def object(self, schema, name: str) -> str:
        props = schema.get("properties", {})
        if not isinstance(props, dict):
            raise SchemaError(f"'properties' at '{name}' must be an object")
        extra = schema.get("additionalProperties", None if props else True)
        if not props and extra in (True, {}):
            return self.primitive("object")
        required = set(schema.get("required", ()))
        missing = required - set(props)
        if missing and not extra:
            raise SchemaError(f"required propert{'ies' if len(missing) > 1 else 'y'} "
                              f"{', '.join(sorted(missing))} at '{name}' not in 'properties'")
        space = self.primitive("space")
        kv = {}
        for key, sub in props.items():
            value = self.visit(sub, f"{name}-{key}")
            kv[key] = self.add_rule(f"{name}-{key}-kv", f'{_json_literal(key)} {space} ":" {space} {value}')
        req = [k for k in props if k in required]
        opt = [k for k in props if k not in required]
        if extra:
            value = self.primitive("value") if extra in (True, {}) else self.visit(extra, f"{name}-additional-value")
            kv["*"] = self.add_rule(f"{name}-additional-kv",
                                    f'{self.primitive("string")} {space} ":" {space} {value}')
            opt.append("*")
        sep = f'{space} "," {space}'
        parts = [f'"{{" {space}']
        parts.append(f" {sep} ".join(kv[k] for k in req))
        if opt:
            def rest(keys: list[str]) -> str:
                """Optional members in order after one is present: ( sep kv )? for each."""
                out = []
                for k in keys:
                    out.append(f"( {sep} {kv[k]} )" + ("*" if k == "*" else "?"))
                return " ".join(out)
            if req:
                parts.append(rest(opt))
            else:   # the first member present has no comma before it
                alts = []
                for i, k in enumerate(opt):
                    first = kv[k] + (f" ( {sep} {kv[k]} )*" if k == "*" else "")
                    alts.append(f"{first} {rest(opt[i + 1:])}".strip())
                parts.append("( " + " | ".join(alts) + " )?")
        parts.append(f'{space} "}}"')
        return " ".join(p for p in parts if p)

    def all_of(self, schemas, name: str) -> str:
        if not isinstance(schemas, list) or not schemas:
            raise SchemaError(f"'allOf' at '{name}' must be a non-empty list")
        merged = {"type": "object", "properties": {}, "required": [], "additionalProperties": False}
        for sub in schemas:
            while isinstance(sub, dict) and "$ref" in sub:
                sub = self.resolve_ref(sub["$ref"])
            if not isinstance(sub, dict) or not (sub.get("type") == "object" or "properties" in sub):
                raise SchemaError(f"'allOf' at '{name}' is supported for objects only")
            merged["properties"].update(sub.get("properties", {}))
            merged["required"] += list(sub.get("required", ()))
        return self.object(merged, name)

    def array(self, schema, name: str) -> str:
        space = self.primitive("space")
        sep = f'{space} "," {space}'
        lo, hi = int(schema.get("minItems", 0)), schema.get("maxItems")
        hi = None if hi is None else int(hi)
        if hi is not None and hi < lo:
            raise SchemaError(f"maxItems {hi} is below minItems {lo} at '{name}'")
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        if isinstance(items, list):     # draft-04 tuple form
            prefix, items = items, schema.get("additionalItems", False)
        if prefix is not None:
            if not isinstance(prefix, list):
                raise SchemaError(f"'prefixItems' at '{name}' must be a list")
            members = [self.visit(s, f"{name}-tuple-{i}") for i, s in enumerate(prefix)]
            body = f" {sep} ".join(members)
            return f'"[" {space} {body} {space} "]"' if members else f'"[" {space} "]"'
        if items is None and lo == 0 and hi is None:
            return self.primitive("array")
        item = self.primitive("value") if items in (None, True, {}) else self.visit(items, f"{name}-item")
        inner = _repeat(item, lo, hi, sep)
        return f'"[" {space} {inner} {space} "]"' if inner else f'"[" {space} "]"'

    def string(self, schema, name: str) -> str:
        fmt = schema.get("format")
        if fmt == "uuid":
            return self.primitive("uuid")
        if fmt in _FORMATS:
            return f'"\\"" {self.primitive(_FORMATS[fmt])} "\\""'
        if "pattern" in schema:
            warnings.warn(f"JSON schema: pattern {schema['pattern']!r} at '{name}' is not supported; "
                          "accepting any string", stacklevel=4)
        lo, hi = int(schema.get("minLength", 0)), schema.get("maxLength")
        hi = None if hi is None else int(hi)
        if hi is not None and hi < lo:
            raise SchemaError(f"maxLength {hi} is below minLength {lo} at '{name}'")
        if lo == 0 and hi is None:
            return self.primitive("string")
        inner = _repeat(self.primitive("char"), lo, hi)
        return f'"\\"" {inner} "\\""' if inner else '"\\"\\""'

    def integer(self, schema) -> str:
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if "exclusiveMinimum" in schema and not isinstance(schema["exclusiveMinimum"], bool):
            lo = schema["exclusiveMinimum"] + 1 if lo is None else max(lo, schema["exclusiveMinimum"] + 1)
        if "exclusiveMaximum" in schema and not isinstance(schema["exclusiveMaximum"], bool):
            hi = schema["exclusiveMaximum"] - 1 if hi is None else min(hi, schema["exclusiveMaximum"] - 1)
        if lo is None and hi is None:
            return self.primitive("integer")
        lo = None if lo is None else int(-(-lo // 1))   # ceil for fractional bounds
        hi = None if hi is None else int(hi // 1)
        if (lo is not None and abs(lo) >= _INT64) or (hi is not None and abs(hi) >= _INT64):
            raise SchemaError("integer bounds must fit in 64 bits")
        return _int_range(lo, hi)


def json_schema_to_gbnf(schema) -> str:
    """GBNF text for a JSON schema (a JSON string or an already parsed object)."""
    if isinstance(schema, (str, bytes)):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as e:
            raise SchemaError(f"not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    conv = _Converter(schema)
    root = conv.visit(schema, "root")
    if root != "root":
        conv.rules["root"] = root
    rules = {"root": conv.rules.pop("root"), **conv.rules}
    return "".join(f"{name} ::= {body}\n" for name, body in rules.items())
