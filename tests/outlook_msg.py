"""Outlook .msg files for the replay tests, written from scratch.

A .msg file is a Compound File (MS-CFB, version 3: 512-byte sectors, small streams in a
mini stream) holding a message's MAPI properties (MS-OXMSG): one stream listing the
fixed-size ones, one stream for each string. No Debian or PyPI tool writes them, so the
tests write their own, with just what a message read from Exchange carries: its class,
subject, body, sender, Internet headers, Message-ID and delivery time.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime

SECTOR, MINI_SECTOR, MINI_CUTOFF = 512, 64, 4096
FREESECT, ENDOFCHAIN, FATSECT, NOSTREAM = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF
STORAGE, STREAM, ROOT = 1, 2, 5
PT_UNICODE, PT_SYSTIME = 0x001F, 0x0040


@dataclass
class _Entry:
    name: str
    kind: int
    data: bytes = b""
    children: list[_Entry] = field(default_factory=list)
    start: int = ENDOFCHAIN
    size: int = 0
    left: int = NOSTREAM
    right: int = NOSTREAM
    child: int = NOSTREAM


def compound_file(streams: dict[str, bytes]) -> bytes:
    """A Compound File holding `streams`, named by path ("storage/stream")."""
    root = _Entry("Root Entry", ROOT)
    for path, data in streams.items():
        parent = root
        *storages, name = path.split("/")
        for storage in storages:
            found = next((c for c in parent.children if c.name == storage), None)
            if found is None:
                found = _Entry(storage, STORAGE)
                parent.children.append(found)
            parent = found
        parent.children.append(_Entry(name, STREAM, data))
    entries = _number(root)

    mini, minifat = bytearray(), []
    big = []
    for entry in entries:
        if entry.kind != STREAM or not entry.data:
            continue
        entry.size = len(entry.data)
        if entry.size < MINI_CUTOFF:
            entry.start = len(mini) // MINI_SECTOR
            count = -(-entry.size // MINI_SECTOR)
            minifat += [entry.start + i + 1 for i in range(count - 1)] + [ENDOFCHAIN]
            mini += entry.data.ljust(count * MINI_SECTOR, b"\0")
        else:
            big.append(entry)
    root.size = len(mini)
    mini_bytes = bytes(mini).ljust(-(-len(mini) // SECTOR) * SECTOR, b"\0")
    minifat_bytes = _sectors(b"".join(struct.pack("<I", x) for x in minifat), FREESECT)
    directory_count = -(-len(entries) // 4)

    # Sectors in order: mini stream, mini FAT, directory, large streams, then the FAT.
    runs = [len(mini_bytes) // SECTOR, len(minifat_bytes) // SECTOR, directory_count]
    runs += [-(-e.size // SECTOR) for e in big]
    data_sectors = sum(runs)
    fat_count = 1
    while data_sectors + fat_count > fat_count * (SECTOR // 4):
        fat_count += 1
    fat = [FREESECT] * (fat_count * SECTOR // 4)
    starts, cursor = [], 0
    for count in runs:
        starts.append(cursor if count else ENDOFCHAIN)
        for i in range(count):
            fat[cursor + i] = cursor + i + 1 if i < count - 1 else ENDOFCHAIN
        cursor += count
    fat_sectors = list(range(cursor, cursor + fat_count))
    for sector in fat_sectors:
        fat[sector] = FATSECT
    root.start = starts[0]
    for entry, start in zip(big, starts[3:], strict=True):
        entry.start = start

    directory = b"".join(_directory_entry(e) for e in entries)
    directory = directory.ljust(directory_count * SECTOR, b"\0")
    empty = _directory_entry(_Entry("", 0, size=0, start=0))
    directory = b"".join(
        directory[i : i + 128] if any(directory[i : i + 128]) else empty
        for i in range(0, len(directory), 128)
    )
    body = (
        mini_bytes
        + minifat_bytes
        + directory
        + b"".join(e.data.ljust(-(-e.size // SECTOR) * SECTOR, b"\0") for e in big)
    )
    body += b"".join(struct.pack("<I", x) for x in fat)
    difat = fat_sectors + [FREESECT] * (109 - len(fat_sectors))
    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII109I",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        b"\0" * 16,
        0x3E,
        3,
        0xFFFE,
        9,
        6,
        b"\0" * 6,
        0,
        fat_count,
        starts[2],
        0,
        MINI_CUTOFF,
        starts[1],
        len(minifat_bytes) // SECTOR,
        ENDOFCHAIN,
        0,
        *difat,
    )
    return header + body


def _number(root: _Entry) -> list[_Entry]:
    """Every entry in directory order, each storage's children linked as a chain of
    right siblings in the order MS-CFB compares names (length, then upper case)."""
    entries = [root]

    def visit(storage: _Entry) -> None:
        children = sorted(storage.children, key=lambda c: (len(c.name), c.name.upper()))
        first = len(entries)
        entries.extend(children)
        if children:
            storage.child = first
        for i, child in enumerate(children):
            child.right = first + i + 1 if i < len(children) - 1 else NOSTREAM
        for child in children:
            if child.kind == STORAGE:
                visit(child)

    visit(root)
    return entries


def _directory_entry(e: _Entry) -> bytes:
    name = e.name.encode("utf-16-le")
    return struct.pack(
        "<64sHBBIII16sIQQIQ",
        name,
        len(name) + 2 if e.name else 0,
        e.kind,
        1,  # black
        e.left,
        e.right,
        e.child,
        b"\0" * 16,
        0,
        0,
        0,
        e.start if e.kind in (STREAM, ROOT) else 0,
        e.size,
    )


def _sectors(data: bytes, fill: int) -> bytes:
    if not data:
        return b""
    pad = -len(data) % SECTOR
    return data + struct.pack("<I", fill) * (pad // 4)


def _filetime(when: datetime) -> int:
    return int((when - datetime(1601, 1, 1, tzinfo=UTC)).total_seconds() * 10_000_000)


def outlook_msg(
    *,
    subject: str,
    body: str,
    sender: str,
    sender_name: str,
    headers: str,
    message_id: str,
    delivered: datetime,
) -> bytes:
    """A .msg file of a message received through Exchange: `headers` is the Internet
    header block as it arrived (PR_TRANSPORT_MESSAGE_HEADERS)."""
    strings = {
        0x001A: "IPM.Note",
        0x0037: subject,
        0x1000: body,
        0x007D: headers,
        0x0C1F: sender,
        0x0C1A: sender_name,
        0x1035: message_id,
    }
    times = {0x0E06: delivered, 0x0039: delivered}
    streams: dict[str, bytes] = {}
    properties = b"\0" * 8 + struct.pack("<IIII", 0, 0, 0, 0) + b"\0" * 8
    for prop, text in strings.items():
        data = text.encode("utf-16-le")
        streams[f"__substg1.0_{prop:04X}{PT_UNICODE:04X}"] = data
        properties += struct.pack("<IIII", (prop << 16) | PT_UNICODE, 6, len(data) + 2, 0)
    for prop, when in times.items():
        properties += struct.pack("<IIQ", (prop << 16) | PT_SYSTIME, 6, _filetime(when))
    streams["__properties_version1.0"] = properties
    for part in ("00020102", "00030102", "00040102"):  # the named-property map, empty
        streams[f"__nameid_version1.0/__substg1.0_{part}"] = b""
    return compound_file(streams)
