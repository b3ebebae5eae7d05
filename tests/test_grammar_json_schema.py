"""JSON schema -> GBNF: the grammar accepts documents the schema accepts and rejects the others
(checked against the jsonschema package), integer ranges exactly, and bad schemas are one-line errors."""
import json
import random

import jsonschema
import pytest

from llamapy.grammar import CompiledGrammar, SchemaError, json_schema_to_gbnf
from llamapy.grammar.json_schema import _int_range

PERSON = {"type": "object",
          "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 10},
                         "age": {"type": "integer", "minimum": 0, "maximum": 150},
                         "tags": {"type": "array", "items": {"enum": ["a", "b", 1, None]}, "maxItems": 3},
                         "when": {"type": "string", "format": "date-time"},
                         "id": {"type": "string", "format": "uuid"}},
          "required": ["name", "age"]}

CASES = [
    (PERSON, ['{"name":"bob","age":42}', '{ "name": "bob",\n  "age": 0 }', '{"name":"b","age":4,"tags":["a",1,null]}',
              '{"name":"x","age":4,"when":"2024-01-31T12:00:00Z"}',
              '{"name":"x","age":4,"id":"123e4567-e89b-12d3-a456-426614174000"}'],
     ['{"name":"bob","age":151}', '{"name":"bob","age":-1}', '{"name":"b","age":4,"tags":["a",1,null,"b"]}',
      '{"age":4,"name":"x"}', '{"name":"","age":4}', '{"name":"x","age":4,"extra":1}', '{"name":"x"}']),
    ({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "boolean"}}},
     ['{}', '{"a":1}', '{"b":true}', '{"a":-7,"b":false}'], ['{"b":true,"a":1}', '{"a":1,}', '{"c":1}']),
    ({"type": ["string", "null"]}, ['"x"', 'null'], ['1', '"a']),
    ({"anyOf": [{"type": "integer"}, {"const": "x"}]}, ['12', '"x"'], ['"y"', '1.5']),
    ({"oneOf": [{"type": "boolean"}, {"type": "number"}]}, ['true', '-1.5e3'], ['"true"']),
    ({"enum": ["red", "green", 3, [1, 2]]}, ['"red"', '3', '[1,2]'], ['"blue"', '4']),
    ({"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 3},
     ['[1,2]', '[1, 2, 3]'], ['[1]', '[1,2,3,4]', '[1,"a"]']),
    ({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]}, ['[1,"a"]'], ['[1]', '["a",1]']),
    ({"type": "object", "additionalProperties": {"type": "number"}}, ['{}', '{"x":1,"y":2.5}'], ['{"x":"1"}']),
    ({"type": "object"}, ['{}', '{"x":[1,{"y":null}]}'], ['[]']),
    ({}, ['1', '"s"', '[{"a":[]}]'], ['nope']),
    ({"type": "string", "format": "date"}, ['"2024-02-29"'], ['"2024-13-01"', '"24-01-01"']),
    ({"type": "string", "format": "time"}, ['"23:59:59Z"', '"01:02:03.123+05:30"'], ['"24:00:00Z"']),
    ({"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"},
                                                          "next": {"anyOf": [{"$ref": "#/$defs/node"},
                                                                             {"type": "null"}]}},
                         "required": ["v", "next"]}},
      "$ref": "#/$defs/node"},
     ['{"v":1,"next":null}', '{"v":1,"next":{"v":2,"next":null}}'], ['{"v":1}', '{"v":1,"next":{"v":2}}']),
    ({"definitions": {"pos": {"type": "integer", "exclusiveMinimum": 0}},
      "type": "object", "properties": {"n": {"$ref": "#/definitions/pos"}}, "required": ["n"]},
     ['{"n":1}', '{"n":999}'], ['{"n":0}', '{"n":-3}']),
    ({"allOf": [{"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                {"type": "object", "properties": {"b": {"type": "string"}}, "required": ["b"]}]},
     ['{"a":1,"b":"x"}'], ['{"a":1}']),
]


@pytest.mark.parametrize("schema, good, bad", CASES)
def test_grammar_language_matches_the_schema(schema, good, bad):
    g = CompiledGrammar(json_schema_to_gbnf(json.dumps(schema)))
    for doc in good:
        jsonschema.validate(json.loads(doc), schema)      # the case itself is right
        assert g.match_string(doc), doc
    for doc in bad:
        assert not g.match_string(doc), doc


def test_grammar_ends_with_the_value():
    """No trailing whitespace after the closing bracket: generation has to stop there."""
    g = CompiledGrammar(json_schema_to_gbnf({"type": "object"}))
    assert g.match_string("{}") and not g.match_prefix("{} ")


@pytest.mark.parametrize("lo, hi", [(0, 0), (0, 9), (1, 10), (5, 123), (-5, 5), (-123, -7), (None, 15), (7, None),
                                    (None, -3), (-20, None), (0, 1000), (99, 101), (123, 4567), (-1000, 0)])
def test_integer_ranges_exact(lo, hi):
    g = CompiledGrammar("root ::= " + _int_range(lo, hi) + "\n")
    start = (lo if lo is not None else -200) - 120
    stop = (hi if hi is not None else 200) + 120
    for v in range(start, stop):
        assert g.match_string(str(v)) == ((lo is None or v >= lo) and (hi is None or v <= hi)), v
    for text in ("01", "00", "+1", "", "1.0"):
        assert not g.match_string(text)


def test_random_integer_ranges():
    rnd = random.Random(3)
    for _ in range(25):
        lo = rnd.randint(-5000, 5000)
        hi = lo + rnd.choice([0, 7, 90, 900, 9000])
        g = CompiledGrammar("root ::= " + _int_range(lo, hi) + "\n")
        for v in list(range(lo - 30, lo + 30)) + list(range(hi - 30, hi + 30)) + [rnd.randint(lo, hi)]:
            assert g.match_string(str(v)) == (lo <= v <= hi), (lo, hi, v)


@pytest.mark.parametrize("schema, message", [
    ("{not json", "not valid JSON"),
    ('{"type": "tuple"}', "unknown type 'tuple'"),
    ('{"$ref": "https://example.com/s.json"}', "only local $ref"),
    ('{"$ref": "#/$defs/missing"}', "points nowhere"),
    ('{"type": "array", "minItems": 3, "maxItems": 1}', "maxItems 1 is below minItems 3"),
    ('{"type": "integer", "minimum": 5, "maximum": 1}', "is empty"),
    ('{"enum": []}', "non-empty list"),
])
def test_bad_schemas(schema, message):
    with pytest.raises(SchemaError) as e:
        json_schema_to_gbnf(schema)
    assert message in str(e.value) and str(e.value).startswith("JSON schema error: ")


def test_pattern_warns_and_accepts_any_string():
    with pytest.warns(UserWarning, match="pattern"):
        gbnf = json_schema_to_gbnf({"type": "string", "pattern": "^[a-z]+$"})
    assert CompiledGrammar(gbnf).match_string('"ANY"')
