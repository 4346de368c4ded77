"""Password-protected zip files with the traditional PKWARE ("ZipCrypto") scheme, stdlib only.

MISP users expect live samples zipped with the password "infected". MISP's own malware-sample
archives are read by PyMISP with the standard library (`zipfile.ZipFile.open(name,
pwd=b"infected")`, pymisp/mispevent.py), and the standard library decrypts only the traditional
scheme, so that is what MISP tooling accepts; AES zips (pyzipper) would not open there. The scheme
protects against accidental execution and antivirus quarantine, not against an attacker: that is its
whole purpose here.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable

__all__ = ["PASSWORD", "encrypted_zip"]

PASSWORD = b"infected"

_CRC_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0xEDB88320 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


class _Keys:
    """The keys of the traditional PKWARE cipher.

    Three 32-bit keys (APPNOTE.TXT §6.1).
    """

    def __init__(self, password: bytes) -> None:
        self.k0, self.k1, self.k2 = 0x12345678, 0x23456789, 0x34567890
        for b in password:
            self.update(b)

    def update(self, b: int) -> None:
        table = _CRC_TABLE
        self.k0 = table[(self.k0 ^ b) & 0xFF] ^ (self.k0 >> 8)
        self.k1 = ((self.k1 + (self.k0 & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        self.k2 = table[(self.k2 ^ (self.k1 >> 24)) & 0xFF] ^ (self.k2 >> 8)

    def encrypt(self, data: bytes) -> bytes:
        # Performance: a plain loop with locals; ~1 s per 4 MB, within the 10 MB per-file cap.
        table = _CRC_TABLE
        k0, k1, k2 = self.k0, self.k1, self.k2
        out = bytearray(len(data))
        for i, p in enumerate(data):
            t = (k2 | 2) & 0xFFFF
            out[i] = p ^ (((t * (t ^ 1)) >> 8) & 0xFF)
            k0 = table[(k0 ^ p) & 0xFF] ^ (k0 >> 8)
            k1 = ((k1 + (k0 & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
            k2 = table[(k2 ^ (k1 >> 24)) & 0xFF] ^ (k2 >> 8)
        self.k0, self.k1, self.k2 = k0, k1, k2
        return bytes(out)


def _dos_time(date_time: tuple[int, int, int, int, int, int]) -> tuple[int, int]:
    year, month, day, hour, minute, second = date_time
    return (
        (max(year, 1980) - 1980) << 9 | month << 5 | day,
        hour << 11 | minute << 5 | second // 2,
    )


def encrypted_zip(
    files: list[tuple[str, bytes]],
    *,
    password: bytes = PASSWORD,
    date_time: tuple[int, int, int, int, int, int] = (2026, 1, 1, 0, 0, 0),
    rand: Callable[[int], bytes] = os.urandom,
) -> bytes:
    """A zip of `files`, deflated and password-encrypted.

    Traditional PKWARE encryption with `password`.
    """
    ddate, dtime = _dos_time(date_time)
    body = bytearray()
    central = bytearray()
    for name, content in files:
        raw_name = name.encode("utf-8")
        crc = zlib.crc32(content) & 0xFFFFFFFF
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        deflated = comp.compress(content) + comp.flush()
        keys = _Keys(password)
        header = rand(11) + bytes([crc >> 24])
        payload = keys.encrypt(header + deflated)
        flags = 0x0001 | 0x0800  # encrypted, UTF-8 names
        offset = len(body)
        body += struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            20,
            flags,
            8,
            dtime,
            ddate,
            crc,
            len(payload),
            len(content),
            len(raw_name),
            0,
        )
        body += raw_name + payload
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            flags,
            8,
            dtime,
            ddate,
            crc,
            len(payload),
            len(content),
            len(raw_name),
            0,
            0,
            0,
            0,
            0o100644 << 16,
            offset,
        )
        central += raw_name
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(files), len(files), len(central), len(body), 0
    )
    return bytes(body + central + end)
