#!/usr/bin/env python3
"""Peer load: closed-loop peak produce to a Kafka-API broker, the shape of Pyralog's W1.

Same record size, ~1 MiB batches, acks=leader, one partition, keys k%08d, 64 distinct random
payloads. Prints the figures as the JSON `pyralog bench suite --peer` reads.
"""
import argparse
import json
import os
import time

from confluent_kafka import Producer, version as ck_version, libversion
from confluent_kafka.admin import AdminClient, NewTopic


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--record-bytes", type=int, default=1024)
    ap.add_argument("--server-pid", type=int)
    ap.add_argument("--name", default="peer")
    ap.add_argument("--notes", default="")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    topic = f"bench-peer-{int(time.time())}"
    admin = AdminClient({"bootstrap.servers": a.bootstrap})
    for f in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        f.result(30)

    errors = []
    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "acks": "1",
        "linger.ms": 2,
        "batch.size": 1 << 20,
        "message.max.bytes": 8 << 20,
        "queue.buffering.max.kbytes": 1 << 20,
        "queue.buffering.max.messages": 1_000_000,
        "compression.type": "none",
        "enable.idempotence": False,
    })
    payloads = [os.urandom(a.record_bytes) for _ in range(64)]

    def done(err, _msg):
        if err is not None:
            errors.append(str(err))

    cpu0 = cpu_seconds(a.server_pid) if a.server_pid else None
    t0 = time.perf_counter()
    for i in range(a.records):
        while True:
            try:
                p.produce(topic, value=payloads[i % 64], key=b"k%08d" % (i % 100_000),
                          partition=0, on_delivery=done)
                break
            except BufferError:
                p.poll(0.005)
        if i % 10_000 == 0:
            p.poll(0)
    left = p.flush(300)
    secs = time.perf_counter() - t0
    cpu1 = cpu_seconds(a.server_pid) if a.server_pid else None
    if left or errors:
        raise SystemExit(f"{left} records unacknowledged, {len(errors)} errors: {errors[:3]}")
    payload = a.records * a.record_bytes
    ck = ck_version()
    ck = ck[0] if isinstance(ck, tuple) else ck
    out = {
        "name": a.name,
        "client": f"confluent-kafka {ck} (librdkafka {libversion()[0]}), Python",
        "record_bytes": a.record_bytes,
        "records": a.records,
        "mb_per_s": payload / 1e6 / secs,
        "server_cpu_s_per_gb": (cpu1 - cpu0) / (payload / 1e9) if cpu0 is not None else None,
        "notes": a.notes,
    }
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
