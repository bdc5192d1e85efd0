"""Extracts the uncompressed ELF vmlinux from an x86 bzImage.

usage: extract-vmlinux.py BZIMAGE OUT

The boot protocol header (>= 2.08) gives the compressed payload's offset and length inside the
protected-mode part. The payload's magic tells the compression; the matching Debian tool
(xz, zstd, gzip, lz4, lzop, bzip2) decompresses it. The result must be an x86-64 ELF64
executable, otherwise nothing is written.
"""

import os
import struct
import subprocess
import sys

MAGICS = [
    (b"\xfd7zXZ\x00", ["xz", "-dc", "--single-stream"]),
    (b"\x28\xb5\x2f\xfd", ["zstd", "-dc", "-q"]),
    (b"\x1f\x8b", ["gzip", "-dc"]),
    (b"\x02\x21\x4c\x18", ["lz4", "-dc"]),
    (b"\x89LZO", ["lzop", "-dc"]),
    (b"BZh", ["bzip2", "-dc"]),
    (b"\x5d\x00\x00", ["xz", "-dc", "--format=lzma"]),
]


def fail(msg):
    print(f"extract-vmlinux: {msg}", file=sys.stderr)
    sys.exit(1)


def is_elf64_x86_64(blob):
    # e_ident: magic, class 2 (64-bit), data 1 (little endian); e_type 2 (EXEC); e_machine 62.
    if len(blob) < 64 or blob[:4] != b"\x7fELF" or blob[4] != 2 or blob[5] != 1:
        return False
    e_type, e_machine = struct.unpack_from("<HH", blob, 16)
    return e_type == 2 and e_machine == 62


def decompress(tool, payload):
    try:
        r = subprocess.run(tool, input=payload, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        fail(f"'{tool[0]}' not installed (needed for this kernel's compression)")
    return r.stdout if r.returncode == 0 else None


def main():
    if len(sys.argv) != 3:
        fail("usage: extract-vmlinux.py BZIMAGE OUT")
    src, out = sys.argv[1], sys.argv[2]
    with open(src, "rb") as f:
        img = f.read()
    if len(img) < 0x250 or img[0x202:0x206] != b"HdrS":
        fail(f"{src}: not a bzImage (no HdrS header)")
    version = struct.unpack_from("<H", img, 0x206)[0]
    if version < 0x208:
        fail(f"{src}: boot protocol {version:#x} < 2.08 has no payload fields")
    setup_sects = img[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", img, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = img[start : start + payload_length]
    if len(payload) != payload_length:
        fail(f"{src}: payload runs past the end of the file")

    for magic, tool in MAGICS:
        if payload.startswith(magic):
            break
    else:
        fail(f"{src}: unknown compression magic {payload[:6].hex()}")

    # kbuild appends the uncompressed size (4 bytes) after most formats; some tools reject it.
    elf = decompress(tool, payload) or decompress(tool, payload[:-4])
    if elf is None:
        fail(f"{tool[0]} could not decompress the payload of {src}")
    if not is_elf64_x86_64(elf):
        fail(f"{src}: decompressed payload is not an x86-64 ELF64 executable")

    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(elf)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    print(f"extract-vmlinux: {tool[0]} payload -> {out} ({len(elf)} bytes, ELF64 x86-64)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
