"""A forward-scanning MCAP reader that survives truncated and damaged files.

rosbag2 files written by a process that was killed have no summary section and no footer, and a
damaged chunk should cost the episodes inside it, not the whole file. This reader therefore walks
the data section record by record (MCAP spec: opcode u8, length u64, body), decompressing each chunk
as it comes; from a summary section it takes only the schemas and channels, in case the chunk that
first defined them is damaged. It stops at the first record whose length runs past the end of the
file and reports what it skipped through ``on_problem``.
"""

from __future__ import annotations

import contextlib
import mmap
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"\x89MCAP0\r\n"

OP_HEADER = 0x01
OP_FOOTER = 0x02
OP_SCHEMA = 0x03
OP_CHANNEL = 0x04
OP_MESSAGE = 0x05
OP_CHUNK = 0x06
OP_MESSAGE_INDEX = 0x07
OP_DATA_END = 0x0F

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_RECORD_HEAD = struct.Struct("<BQ")
_MESSAGE_HEAD = struct.Struct("<HIQQ")  # channel id, sequence, log time, publish time
_MESSAGE_RECORD = struct.Struct("<BQHIQQ")  # a message record's header and the message header
_CHUNK_HEAD = struct.Struct("<QQQI")  # start time, end time, uncompressed size, uncompressed crc


class McapFormatError(Exception):
    """A record that cannot be parsed (reported as a problem, never raised to the caller)."""


@dataclass
class Channel:
    id: int
    topic: str
    msgtype: str
    message_encoding: str
    schema_encoding: str
    schema_data: bytes


def _string(buf: memoryview, pos: int) -> tuple[str, int]:
    (n,) = _U32.unpack_from(buf, pos)
    end = pos + 4 + n
    if end > len(buf):
        raise McapFormatError("string runs past its record")
    return bytes(buf[pos + 4 : end]).decode("utf-8"), end


def _decompress(data: memoryview, compression: str, size: int) -> bytes:
    if compression == "":
        return bytes(data)
    if compression == "zstd":
        try:
            from compression import zstd  # Python 3.14
        except ImportError:
            from backports import zstd  # installed with rosbags
        return zstd.decompress(bytes(data))
    if compression == "lz4":
        try:
            import lz4.frame
        except ImportError as exc:
            raise McapFormatError("the chunk is lz4-compressed and the lz4 package is not installed") from exc
        return lz4.frame.decompress(bytes(data))
    raise McapFormatError(f"unsupported chunk compression {compression!r}")


class McapScanner:
    """The ROS 2 (CDR) messages of one MCAP file in file order: ``(topic, msgtype, log_time_ns, data)``.

    ``on_problem(kind, text)`` receives ``truncated`` (the file ends inside a record or without a
    footer) and ``corrupt`` (a damaged record that was skipped, or one the scan could not get past).
    """

    def __init__(self, path: Path, on_problem: Callable[[str, str], None]):
        self.path = Path(path)
        self.on_problem = on_problem
        self.schemas: dict[int, tuple[str, str, bytes]] = {}
        self.channels: dict[int, Channel] = {}
        self.names: dict[int, tuple[str, str] | None] = {}  # channel id -> (topic, msgtype), None: not CDR
        self.position = 0  # bytes of the file consumed so far (for progress bars)
        self.complete = False  # a footer was reached

    def messages(self) -> Iterator[tuple[str, str, int, memoryview]]:
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[tuple[str, str, int, memoryview]]]:
        """CDR messages as lists of ``(topic, msgtype, log_time_ns, data)``, one list per chunk (or per
        message record outside chunks): per-message generator steps cost more than the parsing itself.

        The file is memory-mapped: message data are views into the mapping (no copies), and the OS
        pages the file in and out, so bags larger than RAM are fine.
        """
        with self.path.open("rb") as f:
            size = f.seek(0, 2)
            if size < 8:
                self.on_problem("truncated" if size else "corrupt", f"the file holds only {size} bytes")
                return
            # The mapping is closed when the last view into it is gone (views outlive this generator).
            buf = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
        if buf[:8] != MAGIC:
            self.on_problem("corrupt", "not an MCAP file (bad magic bytes)")
            return
        self._summary_channels(buf, size)
        yield from self._scan(buf, size)

    def _summary_channels(self, buf: memoryview, size: int) -> None:
        """Schemas and channels from the summary section of a file that has one, so that a damaged
        chunk which first defined them costs only its own messages. The data section's own records
        are read as they come and take precedence; a summary that does not parse is ignored."""
        footer = size - 8 - (9 + 20)  # the footer record (summary start, summary offset start, crc), magic
        if footer < 8 or buf[size - 8 : size] != MAGIC:
            return
        op, length = _RECORD_HEAD.unpack_from(buf, footer)
        if op != OP_FOOTER or length != 20:
            return
        start, offsets, _ = struct.unpack_from("<QQI", buf, footer + 9)
        end = offsets or footer
        if not 8 <= start < end <= footer:
            return
        pos = start
        while pos + 9 <= end:
            op, length = _RECORD_HEAD.unpack_from(buf, pos)
            if pos + 9 + length > end:
                return
            if op in (OP_SCHEMA, OP_CHANNEL):
                with contextlib.suppress(McapFormatError):
                    self._record(op, buf[pos + 9 : pos + 9 + length], [])
            pos += 9 + length

    def _scan(self, buf: memoryview, size: int) -> Iterator[list[tuple[str, str, int, memoryview]]]:
        pos = 8
        head = _RECORD_HEAD.unpack_from
        while True:
            if pos == size:
                self.on_problem("truncated", f"the file ends after {pos} bytes without an MCAP footer")
                return
            if pos + 9 > size:
                self.on_problem("truncated", f"the file ends inside a record header at byte {pos}")
                return
            op, length = head(buf, pos)
            end = pos + 9 + length
            valid_op = 0x01 <= op <= 0x0F or op >= 0x80  # 0x80 and up: user records
            if not valid_op or end > size:
                if valid_op and buf[size - 8 : size] == MAGIC:  # the file is whole: the length is damaged
                    self.on_problem(
                        "corrupt", f"a record at byte {pos} claims {9 + length} bytes, past the end of the file"
                    )
                elif valid_op:
                    self.on_problem(
                        "truncated", f"the file ends inside a record at byte {pos} ({size - pos} of {9 + length} bytes)"
                    )
                else:
                    self.on_problem("corrupt", f"unreadable record (opcode {op:#04x}, length {length}) at byte {pos}")
                return
            if op in (OP_DATA_END, OP_FOOTER):
                self.complete = True
                self.position = size
                return
            if op in (OP_CHUNK, OP_MESSAGE, OP_SCHEMA, OP_CHANNEL, OP_HEADER):
                batch: list[tuple[str, str, int, memoryview]] = []
                try:
                    if op == OP_CHUNK:
                        self._parse_records(self._chunk_records(buf[pos + 9 : end]), batch)
                    else:
                        self._record(op, buf[pos + 9 : end], batch)
                except (McapFormatError, struct.error, UnicodeDecodeError) as exc:  # damaged lengths or names
                    self.on_problem("corrupt", f"damaged record (opcode {op:#04x}) at byte {pos} skipped: {exc}")
                    batch = []  # a damaged chunk yields nothing rather than a part
                pos = self.position = end
                if batch:
                    yield batch
            else:
                # Message indexes (one per channel after every chunk), attachments, metadata: not
                # needed for a scan. Skip runs of them in a tight loop.
                pos = end
                while pos + 9 <= size:
                    op, length = head(buf, pos)
                    if op != OP_MESSAGE_INDEX or pos + 9 + length > size:
                        break
                    pos += 9 + length
                self.position = pos

    def _chunk_records(self, body: memoryview) -> memoryview:
        if len(body) < _CHUNK_HEAD.size + 4:
            raise McapFormatError("chunk record too short")
        _, _, raw_size, crc = _CHUNK_HEAD.unpack_from(body, 0)
        compression, p = _string(body, _CHUNK_HEAD.size)
        (n,) = _U64.unpack_from(body, p)
        p += 8
        if p + n > len(body):
            raise McapFormatError("chunk data runs past its record")
        if compression == "":
            records = body[p : p + n]
        else:
            try:
                records = memoryview(_decompress(body[p : p + n], compression, raw_size))
            except McapFormatError:
                raise
            except Exception as exc:  # zstd/lz4 raise their own error types on damaged data
                raise McapFormatError(f"cannot decompress the {compression} chunk: {exc}") from exc
        if len(records) != raw_size:
            raise McapFormatError(f"chunk holds {len(records)} bytes, its header says {raw_size}")
        if crc and zlib.crc32(records) != crc:
            raise McapFormatError("chunk CRC mismatch")
        return records

    def _parse_records(self, buf: memoryview, out: list) -> None:
        n = len(buf)
        q = 0
        head = _RECORD_HEAD.unpack_from
        names = self.names
        full = _MESSAGE_RECORD.unpack_from
        while q < n:
            if q + _MESSAGE_RECORD.size <= n:
                # Most records are messages: read the record and message headers in one go.
                op, length, cid, _, log_time, _ = full(buf, q)
            elif q + 9 <= n:
                op, length = head(buf, q)
            else:
                raise McapFormatError("record header runs past the chunk")
            start = q + 9
            q = start + length
            if q > n:
                raise McapFormatError(f"record (opcode {op:#04x}) runs past the chunk")
            if op == OP_MESSAGE:
                if length < _MESSAGE_HEAD.size:  # else the record is whole, so the joint read above was made
                    raise McapFormatError("message record too short")
                name = names.get(cid, False)
                if name is False:
                    raise McapFormatError(f"message on unknown channel {cid}")
                if name is not None:
                    out.append((name[0], name[1], log_time, buf[start + _MESSAGE_HEAD.size : q]))
            else:
                self._record(op, buf[start:q], out)

    def _record(self, op: int, body: memoryview, out: list) -> None:
        try:
            if op == OP_MESSAGE:
                self._parse_records_message(body, out)
            elif op == OP_SCHEMA:
                (sid,) = _U16.unpack_from(body, 0)
                name, p = _string(body, 2)
                encoding, p = _string(body, p)
                (n,) = _U32.unpack_from(body, p)
                self.schemas[sid] = (name, encoding, bytes(body[p + 4 : p + 4 + n]))
            elif op == OP_CHANNEL:
                cid, sid = struct.unpack_from("<HH", body, 0)
                topic, p = _string(body, 4)
                message_encoding, p = _string(body, p)
                name, encoding, data = self.schemas.get(sid, ("", "", b""))
                self.channels[cid] = Channel(cid, topic, name, message_encoding, encoding, data)
                # Only CDR channels hold ROS 2 messages; others (e.g. JSON side channels) are skipped.
                self.names[cid] = (topic, name) if message_encoding == "cdr" else None
            elif op == OP_HEADER:
                profile, _ = _string(body, 0)
                if profile not in ("ros2", ""):
                    raise McapFormatError(f"MCAP profile {profile!r} is not ros2")
        except (struct.error, UnicodeDecodeError) as exc:
            raise McapFormatError(str(exc)) from exc

    def _parse_records_message(self, body: memoryview, out: list) -> None:
        cid, _, log_time, _ = _MESSAGE_HEAD.unpack_from(body, 0)
        if cid not in self.names:
            raise McapFormatError(f"message on unknown channel {cid}")
        if self.names[cid] is not None:
            out.append((*self.names[cid], log_time, body[_MESSAGE_HEAD.size :]))
