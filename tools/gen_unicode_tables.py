#!/usr/bin/python3
"""Generates src/model/unicode_tables.h: the code point classes GPT-2's
pre-tokenization regex uses, as sorted inclusive ranges.

The truth is Python's `regex` module (OpenAI's encoder.py compiles its pattern
with it, and Hugging Face tokenizers reproduces it): each class is what
`regex.match(pattern, chr(c))` says for every code point c, so the C tables
follow that module's Unicode version, not unicodedata's.

Usage: /usr/bin/python3 tools/gen_unicode_tables.py > src/model/unicode_tables.h
"""
import sys

import unicodedata

import regex


def ranges(pattern):
    rx = regex.compile(pattern)
    out, start = [], None
    for c in range(0x110000):
        hit = bool(rx.match(chr(c)))
        if hit and start is None:
            start = c
        elif not hit and start is not None:
            out.append((start, c - 1))
            start = None
    if start is not None:
        out.append((start, 0x10FFFF))
    return out


def nfc_unsafe():
    """Code points whose presence can make NFC(text) != text: those NFC
    changes alone, non-starters (combining class > 0), and those that can
    compose with a preceding character (the second of a canonical pair), and
    conjoining Hangul jamo (algorithmic composition)."""
    unsafe = set()
    for c in range(0x110000):
        ch = chr(c)
        if 0xD800 <= c <= 0xDFFF:
            continue
        if unicodedata.normalize("NFC", ch) != ch or unicodedata.combining(ch):
            unsafe.add(c)
        d = unicodedata.decomposition(ch)
        if d and not d.startswith("<"):
            parts = [int(x, 16) for x in d.split()]
            if len(parts) == 2:
                unsafe.add(parts[1])
    unsafe.update(range(0x1100, 0x1200))
    return sorted(unsafe)


def emit_list(name, cps, f, what):
    rs, start, prev = [], None, None
    for c in cps:
        if start is None:
            start = prev = c
        elif c == prev + 1:
            prev = c
        else:
            rs.append((start, prev))
            start = prev = c
    if start is not None:
        rs.append((start, prev))
    f.write("/* %s (unicodedata %s): %d ranges */\n" % (what, unicodedata.unidata_version, len(rs)))
    f.write("static const uint32_t %s[][2] = {\n" % name)
    for i in range(0, len(rs), 4):
        f.write("\t" + " ".join("{0x%X, 0x%X}," % r for r in rs[i:i + 4]) + "\n")
    f.write("};\n\n")


def nfc_tables(f):
    """NFC data from unicodedata: canonical combining classes (ranges of equal
    class), full canonical decompositions (Hangul syllables excluded: they are
    algorithmic), and primary composites (pairs that NFC composes)."""
    ccc, decomp, comp = [], [], []
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        ch = chr(c)
        k = unicodedata.combining(ch)
        if k:
            if ccc and ccc[-1][1] == c - 1 and ccc[-1][2] == k:
                ccc[-1][1] = c
            else:
                ccc.append([c, c, k])
        if 0xAC00 <= c <= 0xD7A3:
            continue
        d = unicodedata.normalize("NFD", ch)
        if d != ch:
            decomp.append((c, [ord(x) for x in d]))
        raw = unicodedata.decomposition(ch)
        if raw and not raw.startswith("<"):
            parts = [int(x, 16) for x in raw.split()]
            if len(parts) == 2 and unicodedata.normalize("NFC", chr(parts[0]) + chr(parts[1])) == ch:
                comp.append((parts[0], parts[1], c))
    comp.sort()
    f.write("/* NFC (unicodedata %s): combining classes, %d ranges */\n" % (unicodedata.unidata_version, len(ccc)))
    f.write("static const uint32_t mb_uc_ccc[][3] = {\n")
    for i in range(0, len(ccc), 4):
        f.write("\t" + " ".join("{0x%X, 0x%X, %d}," % tuple(r) for r in ccc[i:i + 4]) + "\n")
    f.write("};\n\n")
    pool = []
    f.write("/* full canonical decompositions: {code point, offset in pool, length}, %d */\n" % len(decomp))
    f.write("static const uint32_t mb_uc_decomp[][3] = {\n")
    rows = []
    for c, d in decomp:
        rows.append("{0x%X, %d, %d}," % (c, len(pool), len(d)))
        pool.extend(d)
    for i in range(0, len(rows), 4):
        f.write("\t" + " ".join(rows[i:i + 4]) + "\n")
    f.write("};\n\nstatic const uint32_t mb_uc_decomp_pool[] = {\n")
    for i in range(0, len(pool), 8):
        f.write("\t" + " ".join("0x%X," % x for x in pool[i:i + 8]) + "\n")
    f.write("};\n\n")
    f.write("/* primary composites: {first, second, composite}, sorted, %d */\n" % len(comp))
    f.write("static const uint32_t mb_uc_comp[][3] = {\n")
    for i in range(0, len(comp), 4):
        f.write("\t" + " ".join("{0x%X, 0x%X, 0x%X}," % r for r in comp[i:i + 4]) + "\n")
    f.write("};\n\n")


def emit(name, pattern, f):
    rs = ranges(pattern)
    f.write("/* %s: %d ranges */\n" % (pattern, len(rs)))
    f.write("static const uint32_t %s[][2] = {\n" % name)
    for i in range(0, len(rs), 4):
        f.write("\t" + " ".join("{0x%X, 0x%X}," % r for r in rs[i:i + 4]) + "\n")
    f.write("};\n\n")


def main():
    f = sys.stdout
    f.write("/*\n * unicode_tables.h: generated by tools/gen_unicode_tables.py from Python's\n"
            " * regex module %s; do not edit.\n */\n" % regex.__version__)
    f.write("#ifndef MECHBENCH_UNICODE_TABLES_H\n#define MECHBENCH_UNICODE_TABLES_H\n\n")
    f.write("#include <stdint.h>\n\n")
    emit("mb_uc_letter", r"\p{L}", f)
    emit("mb_uc_number", r"\p{N}", f)
    emit("mb_uc_space", r"\s", f)
    emit_list("mb_uc_nfc_unsafe", nfc_unsafe(), f,
              "code points that NFC may change or combine with a neighbour")
    nfc_tables(f)
    f.write("#endif\n")


if __name__ == "__main__":
    main()
