#!/usr/bin/env python3
"""Writes the corpus of broken (and a few valid) safetensors files and checkpoint folders that
tests/io/bad_input_test.cpp opens, plus the fuzzer's seed corpus.

    python3 tools/make_bad_corpus.py            # from the repository root (or anywhere)
    python3 tools/make_bad_corpus.py --check    # exit 1 if the committed corpus differs (tests/cli/cli_errors.sh)

Output (all committed, deterministic, idempotent: the generated folders are rewritten):
  tests/corpus/safetensors/*.safetensors      single files, each < 4 KB
  tests/corpus/checkpoints/<case>/            checkpoint folders (shards + index, no config.json)
  tests/corpus/expected_errors.json           [{"path", "kind", "error", "type"}]
  tests/fuzz/corpus/*                         a few of the files above, seeds for the fuzzer

kind is "file" / "folder" (must fail: the message must contain `error` and the path) or
"file_ok" / "folder_ok" (must open, every tensor readable). `type` is the effarch error class.
The empty-folder case is made by the test itself (git cannot track an empty folder).
Python 3 standard library only.
"""

import json
import os
import shutil
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "corpus")
FUZZ_SEEDS = os.path.join(ROOT, "tests", "fuzz", "corpus")
MAX_FILE = 4096

DTYPE_SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
              "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}

cases = []  # expected_errors.json rows
files = {}  # relative path (under tests/corpus) -> bytes


def data_bytes(n, seed=0):
    """n deterministic bytes (a simple LCG), never all zero."""
    out = bytearray()
    x = 0x12345678 + seed
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out.append((x >> 16) & 0xFF)
    return bytes(out)


def st(header, data=b"", length=None, pad=False):
    """A safetensors file: u64 LE length, header (str or bytes, written as is), data."""
    if isinstance(header, str):
        header = header.encode("utf-8")
    if pad:  # the HF writer pads the header with spaces to a multiple of 8
        header += b" " * (-len(header) % 8)
    n = len(header) if length is None else length
    return struct.pack("<Q", n) + header + data


def entry(dtype, shape, begin, end):
    return '{"dtype":%s,"shape":%s,"data_offsets":%s}' % (
        json.dumps(dtype), json.dumps(shape, separators=(",", ":")),
        json.dumps([begin, end], separators=(",", ":")))


def valid_file(tensors, metadata=None, pad=True, seed=0):
    """tensors: list of (name, dtype, shape), laid out back to back in order."""
    parts, offset = [], 0
    if metadata is not None:
        parts.append('"__metadata__":' + json.dumps(metadata, separators=(",", ":"), ensure_ascii=False))
    for name, dtype, shape in tensors:
        numel = 1
        for d in shape:
            numel *= d
        size = numel * DTYPE_SIZE[dtype]
        parts.append("%s:%s" % (json.dumps(name), entry(dtype, shape, offset, offset + size)))
        offset += size
    return st("{" + ",".join(parts) + "}", data_bytes(offset, seed), pad=pad)


def bad(name, content, error, type_="FormatError"):
    path = "safetensors/" + name + ".safetensors"
    files[path] = content
    cases.append({"path": path, "kind": "file", "error": error, "type": type_})


def good(name, content):
    path = "safetensors/" + name + ".safetensors"
    files[path] = content
    cases.append({"path": path, "kind": "file_ok"})


def folder(name, contents, error=None, type_="FormatError"):
    base = "checkpoints/" + name
    for fname, content in contents.items():
        files[base + "/" + fname] = content.encode("utf-8") if isinstance(content, str) else content
    if error is None:
        cases.append({"path": base, "kind": "folder_ok"})
    else:
        cases.append({"path": base, "kind": "folder", "error": error, "type": type_})


# A tensor 'a' (F32 [2], 8 bytes) and 'b' (F16 [2], 4 bytes): the base most cases break.
A = entry("F32", [2], 0, 8)
B = entry("F16", [2], 8, 12)
D12 = data_bytes(12)


def one(e, data=data_bytes(8)):
    """A file holding a single tensor 'a' with entry text e."""
    return st('{"a":%s}' % e, data)


def utf8_case(name, raw):
    header = b'{"__metadata__":{"note":"' + raw + b'"},"a":' + A.encode() + b"}"
    bad(name, st(header, data_bytes(8)),
        "header is not valid UTF-8 (byte %d of the header)" % header.index(raw))


def build_safetensors():
    # --- the length prefix and the file's size ---------------------------------------------
    bad("too_short", b"\x02\x00\x00", "file is 3 bytes, too short for the 8-byte header length")
    bad("seven_bytes", b"\x02\x00\x00\x00\x00\x00\x00", "file is 7 bytes, too short")
    bad("empty", b"", "file is empty")
    bad("header_over_limit", st("{}", length=100 * 1024 * 1024 + 1),
        "header length 104857601 exceeds the 104857600 byte limit")
    bad("header_length_max_u64", st("{}", length=2**64 - 1), "exceeds the 104857600 byte limit")
    bad("header_truncated", st('{"a":' + A + ',"b":' + B + "}", length=400),
        "header length 400 runs past the end of the file")
    bad("header_only_length", struct.pack("<Q", 2), "header length 2 runs past the end of the file (8 bytes)")
    bad("header_length_zero", st(""), "header length 0 is too short for a JSON object")
    bad("header_length_one", st("{"), "header length 1 is too short for a JSON object")

    # --- header encoding and JSON syntax ---------------------------------------------------
    utf8_case("utf8_invalid_byte", b"\xff")
    utf8_case("utf8_continuation_first", b"\x80abc")
    utf8_case("utf8_overlong_slash", b"\xc0\xaf")
    utf8_case("utf8_overlong_3byte", b"\xe0\x80\xaf")
    utf8_case("utf8_surrogate", b"\xed\xa0\x80")
    utf8_case("utf8_above_10ffff", b"\xf4\x90\x80\x80")
    utf8_case("utf8_truncated_sequence", b"\xe2\x82")
    bad("utf8_cut_at_header_end", st(b'{"a":' + A.encode() + b"}\xe2", data_bytes(8)),
        "header is not valid UTF-8 (byte %d of the header)" % (len(A) + 6))
    bad("not_json", st('{"a": not json}'), "header: invalid JSON")
    bad("json_unterminated", st('{"a":' + A, data_bytes(8)), "header: invalid JSON")
    bad("json_array", st("[" + A + "]", data_bytes(8)), "header must be a JSON object starting with '{'")
    bad("json_string", st('"{}"'), "header must be a JSON object starting with '{'")
    bad("json_leading_space", st(' {"a":' + A + "}", data_bytes(8)),
        "header must be a JSON object starting with '{'")
    bad("json_trailing_garbage", st('{"a":' + A + "}xyz", data_bytes(8)), "expected end of input")
    bad("json_two_objects", st('{"a":' + A + "}{}", data_bytes(8)), "expected end of input")
    bad("json_trailing_comma", st('{"a":' + A + ",}", data_bytes(8)), "header: invalid JSON")
    bad("json_comment", st('{/* c */"a":' + A + "}", data_bytes(8)), "header: invalid JSON")
    # nlohmann's lexer reads a raw NUL as the end of input: "{...}\0junk" must still fail.
    bad("json_nul_then_garbage", st(b'{"a":' + A.encode() + b"}\x00junk", data_bytes(8)),
        "header: invalid JSON: NUL byte at offset %d" % (len(A) + 6))
    bad("json_nul_padding", st(b'{"a":' + A.encode() + b"}\x00\x00", data_bytes(8)), "header: invalid JSON: NUL byte")
    bad("json_nul_in_string", st(b'{"__metadata__":{"k":"a\x00b"},"a":' + A.encode() + b"}", data_bytes(8)),
        "header: invalid JSON: NUL byte at offset 23")
    bad("json_raw_control_char", st('{"__metadata__":{"k":"a\nb"},"a":' + A + "}", data_bytes(8)),
        "header: invalid JSON")
    bad("json_lone_surrogate_escape", st('{"__metadata__":{"k":"\\ud800"},"a":' + A + "}", data_bytes(8)),
        "header: invalid JSON")
    bad("json_deep_arrays", st('{"a":' + "[" * 1900 + "]" * 1900 + "}"), "JSON nested deeper than 64 levels")
    bad("json_deep_objects", st('{"a":' * 600 + "1" + "}" * 600), "JSON nested deeper than 64 levels")
    bad("json_deep_unclosed", st('{"a":' + "[" * 3900), "JSON nested deeper than 64 levels")

    # --- tensor names and entry keys -------------------------------------------------------
    bad("duplicate_tensor_name", st('{"a":' + A + ',"a":' + A + "}", data_bytes(8)), "header: duplicate key 'a'")
    bad("duplicate_key_in_entry",
        one('{"dtype":"F32","shape":[2],"dtype":"F32","data_offsets":[0,8]}'), "header: duplicate key 'dtype'")
    bad("duplicate_metadata_key", st('{"__metadata__":{"k":"1","k":"2"},"a":' + A + "}", data_bytes(8)),
        "header: duplicate key 'k'")
    bad("duplicate_metadata", st('{"__metadata__":{},"__metadata__":{},"a":' + A + "}", data_bytes(8)),
        "header: duplicate key '__metadata__'")
    bad("empty_tensor_name", st('{"":' + A + "}", data_bytes(8)), "a tensor has an empty name")
    bad("entry_array", one('["F32",[2],[0,8]]'), "tensor 'a': entry must be an object, got array")
    bad("entry_string", one('"F32"'), "tensor 'a': entry must be an object, got string")
    bad("entry_null", one("null"), "tensor 'a': entry must be an object, got null")
    bad("unexpected_key", one('{"dtype":"F32","shape":[2],"data_offsets":[0,8],"offsets":[0,8]}'),
        "tensor 'a': unexpected key 'offsets'")
    bad("missing_dtype", one('{"shape":[2],"data_offsets":[0,8]}'), "tensor 'a': missing 'dtype'")
    bad("missing_shape", one('{"dtype":"F32","data_offsets":[0,8]}'), "tensor 'a': missing 'shape'")
    bad("missing_data_offsets", one('{"dtype":"F32","shape":[2]}'), "tensor 'a': missing 'data_offsets'")
    bad("entry_empty_object", one("{}"), "tensor 'a': missing 'dtype'")

    # --- dtype -----------------------------------------------------------------------------
    for dt in ["F4", "U16", "U32", "U64", "C64", "f32", "F8_E8M0", ""]:
        bad("unknown_dtype_" + (dt or "empty"), one(entry(dt, [2], 0, 8)), "tensor 'a': unknown dtype '%s'" % dt)
    bad("dtype_number", one('{"dtype":4,"shape":[2],"data_offsets":[0,8]}'), "tensor 'a': 'dtype' must be a string")
    bad("dtype_null", one('{"dtype":null,"shape":[2],"data_offsets":[0,8]}'), "tensor 'a': 'dtype' must be a string")

    # --- shape -----------------------------------------------------------------------------
    bad("shape_negative_dim", one(entry("F32", [-2], 0, 8)), "tensor 'a': negative dimension -2 in shape [-2]")
    bad("shape_negative_second_dim", one(entry("F32", [2, -1], 0, 8)), "tensor 'a': negative dimension -1")
    bad("shape_float_dim", one('{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}'),
        "tensor 'a': shape [1.5] has a dimension that is not a non-negative integer")
    bad("shape_float_integral_dim", one('{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}'),
        "tensor 'a': shape [2.0] has a dimension that is not a non-negative integer")
    bad("shape_string_dim", one('{"dtype":"F32","shape":["3"],"data_offsets":[0,12]}', data_bytes(12)),
        "tensor 'a': shape [\"3\"] has a dimension that is not a non-negative integer")
    bad("shape_null_dim", one('{"dtype":"F32","shape":[null],"data_offsets":[0,8]}'),
        "has a dimension that is not a non-negative integer")
    bad("shape_nested_dim", one('{"dtype":"F32","shape":[[2]],"data_offsets":[0,8]}'),
        "has a dimension that is not a non-negative integer")
    bad("shape_number", one('{"dtype":"F32","shape":2,"data_offsets":[0,8]}'),
        "tensor 'a': 'shape' must be an array of non-negative integers")
    bad("shape_object", one('{"dtype":"F32","shape":{"0":2},"data_offsets":[0,8]}'),
        "tensor 'a': 'shape' must be an array of non-negative integers")
    bad("shape_dim_above_int64", one(entry("U8", [2**63], 0, 8)),
        "tensor 'a': dimension 9223372036854775808 is too large")
    bad("shape_dim_above_u64", one('{"dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,8]}'),
        "has a dimension that is not a non-negative integer")
    bad("numel_overflow", one(entry("F32", [4294967296, 4294967296, 16], 0, 8)),
        "tensor 'a': element count of shape [4294967296,4294967296,16] overflows")
    bad("numel_overflow_many_dims", one(entry("U8", [65536] * 5, 0, 8)),
        "tensor 'a': element count of shape [65536,65536,65536,65536,65536] overflows")
    # No elements, but torch's strides for it would pass 2^63 (at::empty throws).
    bad("shape_zero_dim_strides_overflow", one(entry("F32", [0, 4294967296, 4294967296, 16], 0, 0), b""),
        "tensor 'a': shape [0,4294967296,4294967296,16] is too large: its non-zero dimensions multiply past 2^63-1")
    bad("numel_above_int64", one(entry("U8", [2**32, 2**31], 0, 8)),
        "tensor 'a': element count of shape [4294967296,2147483648] overflows")
    bad("bytesize_overflow", one(entry("F32", [4294967296, 1073741824], 0, 8)),
        "tensor 'a': byte size of shape [4294967296,1073741824] overflows")
    bad("bytesize_overflow_f64", one(entry("F64", [2**61], 0, 8)), "tensor 'a': byte size of shape [2305843009213693952] overflows")

    # --- data_offsets ----------------------------------------------------------------------
    for name, offs in [("one", "[0]"), ("three", "[0,4,8]"), ("empty", "[]"), ("negative", "[-1,7]"),
                       ("negative_end", "[0,-8]"), ("float", "[0,8.0]"), ("string", '["0","8"]'),
                       ("object", '{"begin":0,"end":8}'), ("number", "8"), ("null", "null")]:
        bad("offsets_" + name, one('{"dtype":"F32","shape":[2],"data_offsets":%s}' % offs),
            "tensor 'a': 'data_offsets' must be [begin, end] with non-negative integers")
    bad("offsets_end_before_begin", st('{"a":' + entry("F32", [2], 8, 0) + "}", data_bytes(8)),
        "tensor 'a': data_offsets [8, 0] end before they begin")
    bad("offsets_span_too_small", one(entry("F32", [2], 0, 4), data_bytes(4)),
        "tensor 'a': data_offsets span 4 bytes but shape [2] of F32 needs 8 bytes")
    bad("offsets_span_too_large", one(entry("F16", [2], 0, 8)),
        "tensor 'a': data_offsets span 8 bytes but shape [2] of F16 needs 4 bytes")
    bad("offsets_span_zero_size", one(entry("F32", [0, 4], 0, 8)),
        "tensor 'a': data_offsets span 8 bytes but shape [0,4] of F32 needs 0 bytes")
    bad("offsets_huge", one(entry("U8", [8], 2**64 - 9, 2**64 - 1)),
        "tensor 'a': data_offsets [18446744073709551607, 18446744073709551615] lie outside the data section (8 bytes)")

    # --- layout of the data section --------------------------------------------------------
    bad("data_truncated", st('{"a":' + A + ',"b":' + B + "}", data_bytes(10)),
        "tensor 'b': data_offsets [8, 12] lie outside the data section (10 bytes)")
    bad("data_missing", st('{"a":' + A + "}"), "tensor 'a': data_offsets [0, 8] lie outside the data section (0 bytes)")
    bad("overlap", st('{"a":' + A + ',"b":' + entry("F32", [2], 4, 12) + "}", D12),
        "tensor 'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]")
    bad("overlap_same_range", st('{"a":' + A + ',"b":' + entry("I32", [2], 0, 8) + "}", data_bytes(8)),
        "overlap tensor 'a' [0, 8]")
    bad("overlap_contained", st('{"a":' + entry("U8", [16], 0, 16) + ',"b":' + entry("U8", [4], 4, 8) + "}",
                                data_bytes(16)), "tensor 'b': data_offsets [4, 8] overlap tensor 'a' [0, 16]")
    bad("overlap_zero_size_inside", st('{"a":' + A + ',"z":' + entry("F32", [0], 4, 4) + "}", data_bytes(8)),
        "tensor 'z': data_offsets [4, 4] overlap tensor 'a' [0, 8]")
    bad("gap_between", st('{"a":' + A + ',"b":' + entry("F16", [2], 12, 16) + "}", data_bytes(16)),
        "tensor 'b': data_offsets begin at 12 leaving a gap of 4 unused bytes after tensor 'a'")
    bad("gap_at_start", st('{"a":' + entry("F32", [2], 4, 12) + "}", D12),
        "tensor 'a': data_offsets begin at 4 leaving a gap of 4 unused bytes after the header")
    bad("trailing_bytes", st('{"a":' + A + "}", D12), "data section has 12 bytes but the tensors cover 8: 4 trailing bytes")
    bad("no_tensors_trailing_bytes", st("{}", data_bytes(3)), "3 trailing bytes")

    # --- __metadata__ ----------------------------------------------------------------------
    bad("metadata_string", st('{"__metadata__":"pt","a":' + A + "}", data_bytes(8)),
        "__metadata__ must be an object mapping strings to strings")
    bad("metadata_array", st('{"__metadata__":["format","pt"]}'), "__metadata__ must be an object")
    bad("metadata_number_value", st('{"__metadata__":{"format":"pt","step":1},"a":' + A + "}", data_bytes(8)),
        "__metadata__ value of 'step' must be a string, got number")
    bad("metadata_object_value", st('{"__metadata__":{"cfg":{"x":"1"}}}'),
        "__metadata__ value of 'cfg' must be a string, got object")
    bad("metadata_null_value", st('{"__metadata__":{"n":null}}'), "__metadata__ value of 'n' must be a string, got null")

    # --- valid files -----------------------------------------------------------------------
    good("ok_two_tensors", st('{"a":' + A + ',"b":' + B + "}", D12, pad=True))
    good("ok_empty_header", st("{}"))
    good("ok_padded_empty_header", st("{}      "))
    good("ok_metadata_only", valid_file([], {"format": "pt", "note": "no tensors"}))
    # Raw multi-byte UTF-8 (2, 3 and 4 bytes) and \u escapes, a surrogate pair and \u0000 included.
    good("ok_metadata_unicode",
         st('{"__metadata__":{"note":"h\u00e9llo \U0001F600 \u4e2d","escaped":"\\u00e9\\ud83d\\ude00\\u0000"},'
            '"w":%s}' % entry("BF16", [3], 0, 6), data_bytes(6, 1), pad=True))
    good("ok_zero_size", valid_file([("empty", "F32", [0, 4]), ("x", "F32", [3]), ("tail", "I64", [4, 0])], seed=2))
    good("ok_zero_size_large_dims", one(entry("F32", [0, 2147483648, 2147483648], 0, 0), b""))
    good("ok_scalar", valid_file([("s", "F64", [])], seed=3))
    good("ok_unaligned", valid_file([("u", "U8", [3]), ("f", "F32", [2]), ("d", "F64", [1]), ("h", "F16", [3])],
                                    pad=False, seed=4))
    good("ok_f8_bool",
         st('{"__metadata__":{"format":"pt"},"e4m3":%s,"e5m2":%s,"mask":%s}'
            % (entry("F8_E4M3", [4], 0, 4), entry("F8_E5M2", [2, 3], 4, 10), entry("BOOL", [5], 10, 15)),
            data_bytes(10, 5) + b"\x00\x01\x01\x00\x01", pad=True))
    good("ok_every_dtype", valid_file([(d.lower(), d, [2]) for d in DTYPE_SIZE if d != "BOOL"], seed=6))
    good("ok_unsorted_offsets", st('{"a":' + entry("F32", [2], 4, 12) + ',"b":' + entry("F32", [1], 0, 4) + "}", D12))
    good("ok_whitespace_json", st('{ "a" : {\n\t"dtype" : "F32" ,\r\n "shape":[ 2 ], "data_offsets":[0, 8] } }  ',
                                  data_bytes(8)))


def shard(tensors, seed=0):
    return valid_file([(n, "F32", [2]) for n in tensors], {"format": "pt"}, seed=seed)


def index(weight_map_text):
    return '{"metadata":{"total_size":16},"weight_map":%s}\n' % weight_map_text


S1 = "model-00001-of-00002.safetensors"
S2 = "model-00002-of-00002.safetensors"
IDX = "model.safetensors.index.json"


def build_checkpoints():
    ok_shards = {S1: shard(["a", "b"], 1), S2: shard(["c"], 2)}
    ok_map = '{"a":"%s","b":"%s","c":"%s"}' % (S1, S1, S2)

    folder("ok_sharded", dict(ok_shards, **{IDX: index(ok_map)}))
    folder("ok_no_index", {"a.safetensors": shard(["x"], 3), "b.safetensors": shard(["y"], 4)})
    folder("ok_single", {"model.safetensors": shard(["w"], 5), "README.md": "not a shard\n"})

    folder("index_not_json", dict(ok_shards, **{IDX: '{"weight_map": {"a": ' + S1}),
           IDX + ": invalid JSON")
    folder("index_not_object", dict(ok_shards, **{IDX: "[]\n"}), IDX + ": must be a JSON object")
    folder("index_missing_weight_map", dict(ok_shards, **{IDX: '{"metadata":{"total_size":16}}\n'}),
           IDX + ": missing 'weight_map' object")
    folder("index_weight_map_array", dict(ok_shards, **{IDX: index('["a","b","c"]')}),
           IDX + ": missing 'weight_map' object")
    folder("index_weight_map_empty", dict(ok_shards, **{IDX: index("{}")}), IDX + ": 'weight_map' is empty")
    folder("index_value_not_string", dict(ok_shards, **{IDX: index('{"a":"%s","b":1,"c":"%s"}' % (S1, S2))}),
           IDX + ": weight_map entry 'b' must name a shard file, got 1")
    folder("index_value_null", dict(ok_shards, **{IDX: index('{"a":"%s","b":null,"c":"%s"}' % (S1, S2))}),
           "weight_map entry 'b' must name a shard file, got null")
    for case, shard_name in [("slash", "sub/" + S2), ("dotdot", ".."), ("dotdot_path", "../" + S2),
                             ("dot", "."), ("empty", ""), ("backslash", "..\\\\" + S2), ("absolute", "/etc/" + S2)]:
        shown = shard_name.replace("\\\\", "\\")
        folder("index_shard_name_" + case,
               dict(ok_shards, **{IDX: index('{"a":"%s","b":"%s","c":"%s"}' % (S1, S1, shard_name))}),
               "weight_map entry 'c' names '%s', which is not a file name in the folder" % shown)
    folder("index_nul_then_garbage", dict(ok_shards, **{IDX: index(ok_map).rstrip("\n") + "\x00{,,,"}),
           IDX + ": invalid JSON: NUL byte")
    folder("index_duplicate_tensor", dict(ok_shards, **{IDX: index('{"a":"%s","b":"%s","c":"%s","a":"%s"}'
                                                                   % (S1, S1, S2, S1))}),
           IDX + ": duplicate key 'a'")
    folder("missing_shard", {S1: ok_shards[S1], IDX: index(ok_map)},
           IDX + ": shard '%s' is missing (it should hold 1 tensors, e.g. 'c')" % S2, "CheckpointError")
    folder("tensor_absent_from_shard",
           dict(ok_shards, **{IDX: index('{"a":"%s","b":"%s","c":"%s","d":"%s"}' % (S1, S1, S2, S2))}),
           "tensor 'd' is listed in shard '%s' but the shard does not contain it" % S2, "CheckpointError")
    folder("shard_has_unlisted_tensor", dict(ok_shards, **{IDX: index('{"a":"%s","c":"%s"}' % (S1, S2))}),
           "shard '%s' holds tensor 'b' which the index does not list" % S1, "CheckpointError")
    folder("shard_has_tensor_assigned_elsewhere",
           {S1: shard(["a", "b"], 1), S2: shard(["b", "c"], 2), IDX: index(ok_map)},
           "shard '%s' holds tensor 'b' which the index assigns to '%s'" % (S2, S1), "CheckpointError")
    folder("no_index_same_tensor_twice", {"a.safetensors": shard(["x", "w"], 3), "b.safetensors": shard(["w"], 4)},
           "tensor 'w' is in both a.safetensors and b.safetensors", "CheckpointError")
    folder("no_safetensors", {"README.md": "weights are elsewhere\n", "model.bin": b"\x00" * 16},
           "no model.safetensors, %s or *.safetensors files" % IDX, "CheckpointError")
    folder("corrupt_shard_indexed", {S1: ok_shards[S1], S2: ok_shards[S2][:-3], IDX: index(ok_map)},
           S2 + ": tensor 'c': data_offsets [0, 8] lie outside the data section (5 bytes)")
    folder("corrupt_shard_bad_utf8", {S1: ok_shards[S1], S2: st(b'{"c":' + A.encode() + b',"\xff":1}', data_bytes(8)),
                                      IDX: index(ok_map)},
           S2 + ": header is not valid UTF-8")
    folder("corrupt_shard_no_index", {"a.safetensors": shard(["x"], 3), "b.safetensors": b"\x10\x00"},
           "b.safetensors: file is 2 bytes, too short")
    folder("corrupt_shard_empty", {"model.safetensors": b""}, "model.safetensors: file is empty")
    files["checkpoints/not_a_folder"] = b"a file where a folder should be\n"
    cases.append({"path": "checkpoints/not_a_folder", "kind": "folder", "error": "not a checkpoint folder",
                  "type": "CheckpointError"})


# Copied into tests/fuzz/corpus as the fuzzer's seeds (small, varied, valid and broken).
FUZZ_SEED_FILES = [
    "ok_two_tensors", "ok_metadata_unicode", "ok_zero_size", "ok_unaligned", "ok_f8_bool", "ok_every_dtype",
    "ok_unsorted_offsets", "overlap", "gap_between", "trailing_bytes", "duplicate_key_in_entry",
    "numel_overflow", "bytesize_overflow", "offsets_end_before_begin", "shape_negative_dim", "metadata_number_value",
    "utf8_overlong_slash", "json_deep_objects", "header_truncated", "empty_tensor_name",
]


def outputs():
    """Everything the generator writes: {path relative to ROOT: bytes}."""
    build_safetensors()
    build_checkpoints()
    paths = [c["path"] for c in cases]
    assert len(paths) == len(set(paths)), "duplicate case path"
    out = {}
    for rel, content in sorted(files.items()):
        assert len(content) < MAX_FILE, "%s is %d bytes" % (rel, len(content))
        out[os.path.relpath(os.path.join(CORPUS, rel), ROOT)] = content
    errors = json.dumps(cases, indent=1, ensure_ascii=False) + "\n"
    out[os.path.relpath(os.path.join(CORPUS, "expected_errors.json"), ROOT)] = errors.encode("utf-8")
    for name in FUZZ_SEED_FILES:
        out[os.path.relpath(os.path.join(FUZZ_SEEDS, name), ROOT)] = files["safetensors/" + name + ".safetensors"]
    return out


def generated_dirs():
    return [os.path.join(CORPUS, "safetensors"), os.path.join(CORPUS, "checkpoints"), FUZZ_SEEDS]


def check(want):
    """The committed corpus against what the generator writes now: 0 when they are the same."""
    have = {}
    for top in generated_dirs():
        for folder, _, names in os.walk(top):
            for name in names:
                path = os.path.join(folder, name)
                with open(path, "rb") as f:
                    have[os.path.relpath(path, ROOT)] = f.read()
    errors_json = os.path.join(CORPUS, "expected_errors.json")
    if os.path.exists(errors_json):
        with open(errors_json, "rb") as f:
            have[os.path.relpath(errors_json, ROOT)] = f.read()
    differ = sorted(k for k in set(want) & set(have) if want[k] != have[k])
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    for what, names in (("differs from the generator's", differ), ("missing (the generator writes it)", missing),
                        ("not written by the generator", extra)):
        for name in names:
            print("%s: %s" % (name, what), file=sys.stderr)
    if differ or missing or extra:
        print("the committed corpus is not what tools/make_bad_corpus.py writes: run it and commit the result",
              file=sys.stderr)
        return 1
    print("the committed corpus is what the generator writes (%d files)" % len(want))
    return 0


def main(argv):
    want = outputs()
    if argv[1:] == ["--check"]:
        return check(want)
    if argv[1:]:
        print("usage: make_bad_corpus.py [--check]", file=sys.stderr)
        return 2
    for top in generated_dirs():
        shutil.rmtree(top, ignore_errors=True)
    total = 0
    for rel, content in want.items():
        path = os.path.join(ROOT, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(content)
        total += len(content)
    kinds = {}
    for c in cases:
        kinds[c["kind"]] = kinds.get(c["kind"], 0) + 1
    print("wrote %d cases (%s), %d files, %d bytes under %s" % (
        len(cases), ", ".join("%s %d" % kv for kv in sorted(kinds.items())), len(want), total,
        os.path.relpath(CORPUS, os.getcwd())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
