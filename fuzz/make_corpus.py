#!/usr/bin/python3
"""Seed corpora for the fuzz targets: malformed files, plus a few valid ones.

    /usr/bin/python3 fuzz/make_corpus.py

rewrites fuzz/corpus/{safetensors,npy,json}/ (deterministic; commit the
result). Names say what each file is:

    bad_<what>.<ext>    must be rejected: `mechbench inspect` exits non-zero with one
                        line on stderr naming the file (tests/cli/test_inspect.c)
    valid_<what>.<ext>  must be accepted: `mechbench inspect` exits 0

Files are written from the format descriptions with struct/json only (numpy
is not needed), and kept under 64 KiB, ci/test's -max_len for the fuzzers.
"""
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def out(kind, name, data):
    d = os.path.join(ROOT, kind)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    assert len(data) < 65536, name
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def clean(kind):
    d = os.path.join(ROOT, kind)
    if os.path.isdir(d):
        for n in os.listdir(d):
            if n.startswith(("bad_", "valid_")):
                os.remove(os.path.join(d, n))


# --- safetensors ---------------------------------------------------------------

def st(header, data=b"", hlen=None, raw_header=None):
    h = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(h) if hlen is None else hlen) + h + data


def t(dtype="F32", shape=(2,), offs=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offs)}


def gen_safetensors():
    k = "safetensors"
    clean(k)
    f32x2 = struct.pack("<2f", 1.5, -2.0)
    valid = {"__metadata__": {"format": "pt"}, "w": t(), "b": t(shape=(1,), offs=(8, 12))}
    out(k, "valid_small.safetensors", st(valid, f32x2 + struct.pack("<f", 3.0)))
    out(k, "valid_empty_header.safetensors", st({}))
    out(k, "valid_scalar_and_empty.safetensors",
        st({"s": t(shape=(), offs=(0, 4)), "e": t(shape=(0, 5), offs=(4, 4))}, struct.pack("<f", 7)))
    out(k, "valid_f16_bf16.safetensors",
        st({"h": t("F16", (2,), (0, 4)), "b": t("BF16", (2,), (4, 8))},
           struct.pack("<4H", 0x3C00, 0x7C00, 0x3F80, 0xFFC0)))
    out(k, "valid_nan.safetensors", st({"w": t()}, struct.pack("<2f", float("nan"), 1.0)))

    out(k, "bad_empty_file.safetensors", b"")
    out(k, "bad_three_bytes.safetensors", b"\x02\x00\x00")
    out(k, "bad_header_longer_than_file.safetensors", st({"w": t()}, f32x2, hlen=4096))
    out(k, "bad_header_length_huge.safetensors", st({}, hlen=2**63 + 5))
    out(k, "bad_header_length_over_limit.safetensors", st({}, hlen=100_000_001))
    out(k, "bad_header_length_zero.safetensors", st({}, b"{}", hlen=0))
    out(k, "bad_json_truncated.safetensors", st(None, raw_header=b'{"w":{"dtype":"F32","sha'))
    out(k, "bad_json_trailing_garbage.safetensors", st(None, raw_header=b'{} x'))
    out(k, "bad_json_nul_byte.safetensors", st(None, raw_header=b'{"w\x00":1}'))
    out(k, "bad_json_invalid_utf8.safetensors", st(None, raw_header=b'{"w\xff":{}}'))
    out(k, "bad_json_only_spaces.safetensors", st(None, raw_header=b" " * 16))
    out(k, "bad_json_deep_nesting.safetensors",
        st(None, raw_header=b'{"__metadata__":' + b"[" * 30000 + b"]" * 30000 + b"}"))
    out(k, "bad_json_huge_integer.safetensors",
        st(None, raw_header=b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,99999999999999999999999]}}'))
    out(k, "bad_json_duplicate_tensor.safetensors",
        st(None, raw_header=b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                            b'"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', data=f32x2))
    out(k, "bad_header_is_array.safetensors", st([1, 2, 3]))
    out(k, "bad_header_is_string.safetensors", st(None, raw_header=b'"F32"'))
    out(k, "bad_tensor_not_object.safetensors", st({"w": [0, 8]}, f32x2))
    out(k, "bad_dtype_unknown.safetensors", st({"w": t("F8_E5M2", (8,), (0, 8))}, f32x2))
    out(k, "bad_dtype_lowercase.safetensors", st({"w": t("f32")}, f32x2))
    out(k, "bad_dtype_not_string.safetensors", st({"w": t(4)}, f32x2))
    out(k, "bad_shape_not_array.safetensors", st({"w": {"dtype": "F32", "shape": 2, "data_offsets": [0, 8]}}, f32x2))
    out(k, "bad_shape_negative.safetensors", st({"w": t(shape=(-2,))}, f32x2))
    out(k, "bad_shape_float.safetensors", st({"w": t(shape=(2.0,))}, f32x2))
    out(k, "bad_shape_nine_dims.safetensors", st({"w": t(shape=(1,) * 8 + (2,))}, f32x2))
    out(k, "bad_shape_overflow.safetensors", st({"w": t(shape=(2**40, 2**40, 2**40))}, f32x2))
    out(k, "bad_shape_span_mismatch.safetensors", st({"w": t(shape=(3,))}, f32x2 + f32x2))
    out(k, "bad_offsets_past_data.safetensors", st({"w": t(shape=(4,), offs=(0, 16))}, f32x2))
    out(k, "bad_offsets_begin_after_end.safetensors", st({"w": t(shape=(0,), offs=(8, 0))}, f32x2))
    out(k, "bad_offsets_negative.safetensors", st({"w": t(offs=(-8, 0))}, f32x2))
    out(k, "bad_offsets_one_element.safetensors", st({"w": t(offs=(0,))}, f32x2))
    out(k, "bad_offsets_strings.safetensors", st({"w": t(offs=("0", "8"))}, f32x2))
    out(k, "bad_offsets_int64_max.safetensors",
        st({"w": t(shape=(0,), offs=(2**63 - 1, 2**63 - 1))}, f32x2))
    out(k, "bad_overlap.safetensors",
        st({"a": t(offs=(0, 8)), "b": t(offs=(4, 12))}, f32x2 + f32x2))
    out(k, "bad_overlap_same_span.safetensors",
        st({"a": t(offs=(0, 8)), "b": t(offs=(0, 8))}, f32x2))
    out(k, "bad_overlap_nested.safetensors",
        st({"outer": t(shape=(4,), offs=(0, 16)), "inner": t(shape=(1,), offs=(4, 8)),
            "after": t(shape=(1,), offs=(16, 20))}, f32x2 * 2 + b"\0" * 4))
    out(k, "bad_overlap_empty_inside.safetensors",
        st({"a": t(offs=(0, 8)), "z": t(shape=(0,), offs=(4, 4))}, f32x2))
    out(k, "bad_metadata_value_int.safetensors", st({"__metadata__": {"step": 3}}))
    out(k, "bad_metadata_value_null.safetensors", st({"__metadata__": {"step": None}}))
    out(k, "bad_metadata_array.safetensors", st({"__metadata__": ["format", "pt"]}))
    out(k, "bad_metadata_nested.safetensors", st({"__metadata__": {"cfg": {"a": "b"}}}))
    out(k, "bad_field_missing.safetensors", st({"w": {"dtype": "F32", "shape": [2]}}, f32x2))
    out(k, "bad_field_extra.safetensors",
        st({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "sha": "x"}}, f32x2))
    out(k, "bad_control_chars_in_name.safetensors", st({"a\nb\r\x1b[31m": [1]}, f32x2))
    out(k, "bad_truncated_data.safetensors",
        st(valid, f32x2 + struct.pack("<f", 3.0))[:-3])


# --- npy -------------------------------------------------------------------

def npy(header, data=b"", major=1, hlen=None, magic=b"\x93NUMPY", minor=0):
    h = header.encode("latin-1") if isinstance(header, str) else header
    fmt = "<H" if major == 1 else "<I"
    return magic + bytes([major, minor]) + struct.pack(fmt, len(h) if hlen is None else hlen) + h + data


def hdr(descr="<f4", fortran="False", shape="(2,)"):
    return "{'descr': %s, 'fortran_order': %s, 'shape': %s, }" % (descr if descr.startswith(("'", "[")) else repr(descr), fortran, shape)


def padded(h, prefix=10):
    h = h + " " * ((-(prefix + len(h) + 1)) % 64) + "\n"
    return h


def gen_npy():
    k = "npy"
    clean(k)
    f32x2 = struct.pack("<2f", 1.5, -2.0)
    out(k, "valid_f32.npy", npy(padded(hdr()), f32x2))
    out(k, "valid_i64_2x2.npy", npy(padded(hdr("<i8", shape="(2, 2)")), struct.pack("<4q", 1, -2, 3, 2**40)))
    out(k, "valid_scalar.npy", npy(padded(hdr(shape="()")), struct.pack("<f", 0.5)))
    out(k, "valid_empty.npy", npy(padded(hdr(shape="(0, 4)"))))
    out(k, "valid_v2.npy", npy(padded(hdr(), 12), f32x2, major=2))
    out(k, "valid_v3_u8.npy", npy(padded(hdr("|u1", shape="(3,)"), 12), b"\x01\x02\x03", major=3))
    out(k, "valid_bool.npy", npy(padded(hdr("|b1", shape="(2,)")), b"\x01\x00"))

    out(k, "bad_empty_file.npy", b"")
    out(k, "bad_magic.npy", npy(padded(hdr()), f32x2, magic=b"\x93NUMPx"))
    out(k, "bad_zip_magic.npy", b"PK\x03\x04" + b"\0" * 60)
    out(k, "bad_version_4.npy", npy(padded(hdr()), f32x2, major=4))
    out(k, "bad_version_1_1.npy", npy(padded(hdr()), f32x2, minor=1))
    out(k, "bad_preamble_cut.npy", b"\x93NUMPY\x02\x00\x40")
    out(k, "bad_header_length_past_end.npy", npy(padded(hdr()), f32x2, hlen=60000))
    out(k, "bad_header_length_v2_huge.npy", npy(padded(hdr(), 12), f32x2, major=2, hlen=0xFFFFFFFF))
    out(k, "bad_header_empty.npy", npy("", f32x2))
    out(k, "bad_header_not_dict.npy", npy(padded("['<f4', False, (2,)]"), f32x2))
    out(k, "bad_header_unclosed.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)\n", f32x2))
    out(k, "bad_header_garbage_after.npy", npy(padded(hdr() + " 42"), f32x2))
    out(k, "bad_header_missing_shape.npy", npy(padded("{'descr': '<f4', 'fortran_order': False}"), f32x2))
    out(k, "bad_header_extra_key.npy", npy(padded("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}"), f32x2))
    out(k, "bad_header_duplicate_key.npy", npy(padded("{'shape': (2,), 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}"), f32x2))
    out(k, "bad_header_unterminated_string.npy", npy("{'descr': '<f4", f32x2))
    out(k, "bad_header_escape.npy", npy(padded(hdr("'<f\\x34'")), f32x2))
    out(k, "bad_header_non_ascii.npy", npy(padded(hdr("'<f4\xe9'")), f32x2))
    out(k, "bad_header_nul.npy", npy(padded(hdr("'<f\x004'")), f32x2))
    out(k, "bad_fortran_order.npy", npy(padded(hdr(fortran="True", shape="(2, 1)")), f32x2))
    out(k, "bad_fortran_order_int.npy", npy(padded(hdr(fortran="0")), f32x2))
    out(k, "bad_big_endian.npy", npy(padded(hdr(">f4")), f32x2))
    out(k, "bad_structured_dtype.npy", npy(padded(hdr("[('a', '<f4')]")), f32x2))
    out(k, "bad_complex_dtype.npy", npy(padded(hdr("<c8", shape="(1,)")), f32x2))
    out(k, "bad_unicode_dtype.npy", npy(padded(hdr("<U2", shape="(1,)")), f32x2))
    out(k, "bad_object_dtype.npy", npy(padded(hdr("|O", shape="(1,)")), b"\0" * 8))
    out(k, "bad_shape_list.npy", npy(padded(hdr(shape="[2]")), f32x2))
    out(k, "bad_shape_one_tuple_no_comma.npy", npy(padded(hdr(shape="(2)")), f32x2))
    out(k, "bad_shape_negative.npy", npy(padded(hdr(shape="(-2,)")), f32x2))
    out(k, "bad_shape_float.npy", npy(padded(hdr(shape="(2.0,)")), f32x2))
    out(k, "bad_shape_nine_dims.npy", npy(padded(hdr(shape="(1, 1, 1, 1, 1, 1, 1, 1, 2)")), f32x2))
    out(k, "bad_shape_digits_overflow.npy", npy(padded(hdr(shape="(123456789012345678901234,)")), f32x2))
    out(k, "bad_shape_numel_overflow.npy", npy(padded(hdr(shape="(4294967296, 4294967296, 16)")), f32x2))
    out(k, "bad_data_truncated.npy", npy(padded(hdr(shape="(3,)")), f32x2))
    out(k, "bad_data_trailing.npy", npy(padded(hdr()), f32x2 + b"\0"))


# --- JSON ------------------------------------------------------------------

def gen_json():
    k = "json"
    clean(k)
    spec = {"suite": "canonical", "alpha": 0.05,
            "tasks": [{"name": "induction", "metrics": [{"name": "acc", "margin": 0.01}]},
                      {"name": "ioi", "metrics": []}]}
    out(k, "valid_spec.json", json.dumps(spec, indent=2) + "\n")
    out(k, "valid_array.json", "[1, 2.5, \"x\", [true, false, null], {}]\n")
    out(k, "valid_unicode.json", '{"name": "caf\\u00e9 \u00e9", "e": "\\ud83d\\ude00"}\n')

    out(k, "bad_empty_file.json", "")
    out(k, "bad_only_whitespace.json", " \n\t \n")
    out(k, "bad_truncated_object.json", '{"suite": "canonical", "tasks": [{"name": ')
    out(k, "bad_trailing_comma.json", '{"a": 1, "b": [1, 2,],}')
    out(k, "bad_duplicate_keys.json", '{"alpha": 0.05, "alpha": 0.01}')
    out(k, "bad_single_quotes.json", "{'suite': 'canonical'}")
    out(k, "bad_unquoted_key.json", "{suite: 1}")
    out(k, "bad_nan_literal.json", '{"alpha": NaN}')
    out(k, "bad_infinity_literal.json", '{"alpha": -Infinity}')
    out(k, "bad_comment.json", '{"a": 1 // note\n}')
    out(k, "bad_unterminated_string.json", '{"a": "abc')
    out(k, "bad_bad_escape.json", '{"a": "\\q"}')
    out(k, "bad_lone_surrogate.json", '{"a": "\\ud800"}')
    out(k, "bad_invalid_utf8.json", b'{"a": "\xc3\x28"}')
    out(k, "bad_overlong_utf8.json", b'{"a": "\xc0\xaf"}')
    out(k, "bad_nul_byte.json", b'{"a": "x\x00y"}')
    out(k, "bad_control_char_in_string.json", b'{"a": "x\x01y"}')
    out(k, "bad_number_overflow.json", '{"alpha": 1e400}')
    out(k, "bad_integer_overflow.json", '{"n": 99999999999999999999999}')
    out(k, "bad_leading_zero.json", '{"n": 012}')
    out(k, "bad_plus_sign.json", '{"n": +1}')
    out(k, "bad_top_level_scalar.json", "42")
    out(k, "bad_two_documents.json", "{} {}")
    out(k, "bad_bom.json", b'\xef\xbb\xbf{"a": 1}')
    out(k, "bad_missing_colon.json", '{"a" 1}')
    out(k, "bad_missing_comma.json", '[1 2]')
    out(k, "bad_mismatched_brackets.json", '{"a": [1, 2}')
    out(k, "bad_deep_nesting.json", "[" * 20000 + "]" * 20000)
    out(k, "bad_deep_objects.json", '{"a":' * 10000 + "1" + "}" * 10000)


# --- model.safetensors.index.json (sharded checkpoints) ------------------------

def gen_index():
    clean("index")
    ok = {"metadata": {"total_size": 4096},
          "weight_map": {"gpt_neox.embed_in.weight": "model-00001-of-00002.safetensors",
                         "embed_out.weight": "model-00002-of-00002.safetensors",
                         "gpt_neox.layers.0.attention.dense.weight": "model-00001-of-00002.safetensors"}}
    out("index", "valid_two_shards.json", json.dumps(ok, indent=2) + "\n")
    out("index", "valid_no_metadata.json", json.dumps({"weight_map": {"wte.weight": "model.safetensors"}}))
    bad = {
        "bad_not_object.json": "[]",
        "bad_no_weight_map.json": json.dumps({"metadata": {}}),
        "bad_weight_map_array.json": json.dumps({"weight_map": []}),
        "bad_empty_weight_map.json": json.dumps({"weight_map": {}}),
        "bad_file_not_string.json": json.dumps({"weight_map": {"a": 3}}),
        "bad_parent_dir.json": json.dumps({"weight_map": {"a": "../model.safetensors"}}),
        "bad_subdir.json": json.dumps({"weight_map": {"a": "sub/model.safetensors"}}),
        "bad_hidden_file.json": json.dumps({"weight_map": {"a": ".model.safetensors"}}),
        "bad_empty_file_name.json": json.dumps({"weight_map": {"a": ""}}),
        "bad_empty_tensor_name.json": json.dumps({"weight_map": {"": "m.safetensors"}}),
        "bad_unknown_field.json": json.dumps({"weight_map": {"a": "m.safetensors"}, "shards": 2}),
        "bad_metadata_not_object.json": json.dumps({"metadata": [], "weight_map": {"a": "m.safetensors"}}),
        "bad_truncated.json": '{"weight_map": {"a": "m.safetensors"',
        "bad_not_utf8.json": b'{"weight_map": {"\xff": "m.safetensors"}}',
    }
    for name, text in bad.items():
        out("index", name, text)


# --- ptbin (PyTorch zip checkpoints) ----------------------------------------------

def gen_ptbin():
    """Copies of tests/fixtures/ptbin (torch.save files made by its gen_ptbin.py)."""
    fx = os.path.join(os.path.dirname(ROOT), "..", "tests", "fixtures", "ptbin")
    clean("ptbin")
    for name in sorted(os.listdir(os.path.join(fx, "bad"))):
        with open(os.path.join(fx, "bad", name), "rb") as f:
            out("ptbin", "bad_" + name, f.read())
    for src, name in (("neox_f16/pytorch_model.bin", "valid_neox_f16.bin"),):
        with open(os.path.join(fx, src), "rb") as f:
            out("ptbin", name, f.read())


if __name__ == "__main__":
    gen_ptbin()
    gen_index()
    gen_safetensors()
    gen_npy()
    gen_json()
