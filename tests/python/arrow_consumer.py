"""An analytic consumer: a Python client generated from the .proto alone (grpcio, default
4 MiB receive limit) reads a log with FETCH_FORMAT_ARROW and pyarrow, from offset 0 to END,
across the cold and hot tiers.

Checks every column of every row against the test's model (offset dense and in order,
key "key-{i}", timestamp T0 + i, one header "i" = i as 8 little-endian bytes, epoch 1), then
reads the log again under a 64 KiB response bound and checks max_records.

Usage: arrow_consumer.py PROTO_DIR HOST:PORT LOG END T0 VALUES_OUT
Writes the values back to back to VALUES_OUT (the test compares them byte for byte) and
prints one line of JSON: {"records": n, "fetches": f, "largest_response": bytes, ...}.
"""

import json
import os
import sys
import tempfile

import grpc
import pyarrow as pa
from grpc_tools import protoc

EXPECTED_SCHEMA = pa.schema([
    pa.field("offset", pa.int64(), nullable=False),
    pa.field("epoch", pa.int64(), nullable=False),
    pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("key", pa.binary()),
    pa.field("value", pa.binary()),
    pa.field("headers", pa.list_(pa.field("element", pa.struct([
        pa.field("key", pa.string(), nullable=False),
        pa.field("value", pa.binary(), nullable=False),
    ]), nullable=False)), nullable=False),
])


def generate(proto_dir, out):
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    code = protoc.main(["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out}",
                        f"--grpc_python_out={out}", "pyralog/v1/pyralog.proto"])
    if code != 0:
        sys.exit(f"protoc failed: {code}")
    sys.path.insert(0, out)


def table_of(resp):
    if not resp.arrow:
        return None
    table = pa.ipc.open_stream(resp.arrow).read_all()
    if not table.schema.equals(EXPECTED_SCHEMA):
        sys.exit(f"unexpected schema:\n{table.schema}")
    return table


def read_all(consumer, pb, log, end, max_response_bytes=None, on_table=None):
    offset, fetches, largest = 0, 0, 0
    while offset < end:
        req = pb.FetchRequest(log=log, partition=0, offset=offset, format=pb.FETCH_FORMAT_ARROW)
        if max_response_bytes is not None:
            req.max_response_bytes = max_response_bytes
        resp = consumer.Fetch(req, timeout=30)
        fetches += 1
        largest = max(largest, resp.ByteSize())
        if max_response_bytes is not None and resp.ByteSize() > max_response_bytes:
            sys.exit(f"response of {resp.ByteSize()} bytes over the bound {max_response_bytes}")
        table = table_of(resp)
        if table is None or table.num_rows == 0:
            sys.exit(f"no progress at offset {offset}")
        offsets = table.column("offset").to_pylist()
        if offsets != list(range(offset, offset + len(offsets))):
            sys.exit(f"offsets not dense from {offset}: {offsets[:5]}...")
        if on_table:
            on_table(table)
        offset += len(offsets)
        if resp.next_offset != offset:
            sys.exit(f"next_offset {resp.next_offset} != {offset}")
    return offset, fetches, largest


def main():
    proto_dir, target, log, end, t0, values_out = sys.argv[1:7]
    end, t0 = int(end), int(t0)
    with tempfile.TemporaryDirectory() as out:
        generate(proto_dir, out)
        from pyralog.v1 import pyralog_pb2 as pb
        from pyralog.v1 import pyralog_pb2_grpc as rpc

        consumer = rpc.ConsumerStub(grpc.insecure_channel(target))

        with open(values_out, "wb") as values:
            def check(table):
                first = table.column("offset")[0].as_py()
                for j, row in enumerate(table.to_pylist()):
                    i = first + j
                    ts_us = int(table.column("timestamp")[j].value)
                    if row["key"] != f"key-{i}".encode() or ts_us != t0 + i or row["epoch"] != 1:
                        sys.exit(f"row {i} differs: key {row['key']!r} ts {ts_us} epoch {row['epoch']}")
                    if row["headers"] != [{"key": "i", "value": i.to_bytes(8, "little")}]:
                        sys.exit(f"headers of {i}: {row['headers']}")
                    values.write(row["value"])

            records, fetches, largest = read_all(consumer, pb, log, end, on_table=check)

        # The same log under a client-chosen 64 KiB bound.
        _, small_fetches, small_largest = read_all(consumer, pb, log, end, max_response_bytes=65536)

        # max_records bounds the rows exactly.
        resp = consumer.Fetch(pb.FetchRequest(log=log, partition=0, offset=10, max_records=3,
                                              format=pb.FETCH_FORMAT_ARROW), timeout=30)
        got = table_of(resp).column("offset").to_pylist()
        if got != [10, 11, 12] or resp.next_offset != 13:
            sys.exit(f"max_records=3 from 10 gave {got}, next {resp.next_offset}")

        print(json.dumps({"records": records, "fetches": fetches, "largest_response": largest,
                          "fetches_64k": small_fetches, "largest_64k": small_largest}))


if __name__ == "__main__":
    main()
