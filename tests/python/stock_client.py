"""A stock Python gRPC client (grpcio, default 4 MiB receive limit, code generated from the
.proto alone) reads a whole backlog of small records with FETCH_FORMAT_RECORDS, through the
shipped retry service config.

Usage: stock_client.py PROTO_DIR SERVICE_CONFIG HOST:PORT LOG EXPECTED_COUNT
Prints one line of JSON: {"records": n, "fetches": f, "largest_response": bytes}.
"""

import json
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc


def generate(proto_dir, out):
    proto = "pyralog/v1/pyralog.proto"
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    code = protoc.main(
        ["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out}",
         f"--grpc_python_out={out}", proto]
    )
    if code != 0:
        sys.exit(f"protoc failed on {proto}: {code}")
    sys.path.insert(0, out)


def main():
    proto_dir, service_config, target, log, expected = sys.argv[1:6]
    expected = int(expected)
    with tempfile.TemporaryDirectory() as out:
        generate(proto_dir, out)
        from pyralog.v1 import pyralog_pb2 as pb
        from pyralog.v1 import pyralog_pb2_grpc as rpc

        with open(service_config) as f:
            config = f.read()
        # No receive limit option: grpcio's default (4 MiB) applies.
        channel = grpc.insecure_channel(
            target, options=[("grpc.service_config", config), ("grpc.enable_retries", 1)]
        )
        consumer = rpc.ConsumerStub(channel)
        offset, fetches, largest = 0, 0, 0
        while offset < expected:
            resp = consumer.Fetch(
                pb.FetchRequest(log=log, partition=0, offset=offset,
                                format=pb.FETCH_FORMAT_RECORDS),
                timeout=30,
            )
            fetches += 1
            largest = max(largest, resp.ByteSize())
            if not resp.records:
                sys.exit(f"no progress at offset {offset}")
            for r in resp.records:
                if r.offset != offset or int.from_bytes(r.value, "big") != offset:
                    sys.exit(f"record {r.offset} out of order at {offset}")
                offset += 1
            if resp.next_offset != offset:
                sys.exit(f"next_offset {resp.next_offset} != {offset}")
        print(json.dumps({"records": offset, "fetches": fetches, "largest_response": largest}))


if __name__ == "__main__":
    main()
