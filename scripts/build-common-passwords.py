#!/usr/bin/env python3
"""Builds src/auth/data/common-passwords.fc from the source lists named in
src/auth/data/README.md.

Usage: build-common-passwords.py OUT SOURCE...   (each SOURCE a .txt, .txt.gz or .json list)

Every entry is NFKC-normalised and lower-cased (the same canonical form the policy
checks), entries shorter than 8 or longer than 64 characters are dropped (the length rules
refuse those before the list is consulted), and the rest are sorted, deduplicated and
front-coded:

    magic  b"FGPW1\n"
    count  u32 little-endian
    entry  prefix_len u8 | suffix_len u8 | suffix bytes (UTF-8)   (repeated `count` times)

where prefix_len is the number of bytes shared with the previous entry.
"""
import gzip, json, struct, sys, unicodedata

def load(path):
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]

def main():
    out, sources = sys.argv[1], sys.argv[2:]
    words = set()
    for src in sources:
        for w in load(src):
            w = unicodedata.normalize("NFKC", w).lower()
            if 8 <= len(w) <= 64 and all(ord(c) >= 0x20 for c in w):
                words.add(w.encode("utf-8"))
    entries = sorted(words)
    buf = bytearray(b"FGPW1\n")
    buf += struct.pack("<I", len(entries))
    prev = b""
    for e in entries:
        p = 0
        while p < min(len(prev), len(e), 255) and prev[p] == e[p]:
            p += 1
        suffix = e[p:]
        assert len(suffix) <= 255
        buf += bytes([p, len(suffix)]) + suffix
        prev = e
    with open(out, "wb") as f:
        f.write(buf)
    print(f"{len(entries)} entries, {len(buf)} bytes")

if __name__ == "__main__":
    main()
