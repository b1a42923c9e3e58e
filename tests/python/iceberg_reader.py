"""Reads a Pyralog log's Iceberg table from the S3 test server with pyiceberg and DuckDB.

Usage: iceberg_reader.py TABLE_URI ENDPOINT KEY SECRET [DAY]

TABLE_URI is the log's folder (s3://bucket/prefix/log=NAME); the current metadata file is
found through metadata/version-hint.text, as a static reader would. Prints one JSON object:
what each engine counts and sums (the `amount` field of the JSON values), how many files the
current snapshot lists, how many Parquet objects the folder holds, and, with DAY
(YYYY-MM-DD), the files pyiceberg plans for a filter on that UTC day and the rows it returns.
"""

import datetime
import json
import site
import sys

import duckdb
import pyarrow.fs as pafs
from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan
from pyiceberg.table import StaticTable


def main():
    table_uri, endpoint, key, secret = sys.argv[1:5]
    day = sys.argv[5] if len(sys.argv) > 5 else None
    host = endpoint.split("://", 1)[1]
    fs = pafs.S3FileSystem(access_key=key, secret_key=secret, endpoint_override=host,
                           scheme="http", region="us-east-1")
    folder = table_uri.split("://", 1)[1]
    with fs.open_input_file(f"{folder}/metadata/version-hint.text") as f:
        version = int(f.read().decode().strip())
    metadata = f"{table_uri}/metadata/v{version}.metadata.json"
    props = {"s3.endpoint": endpoint, "s3.access-key-id": key, "s3.secret-access-key": secret,
             "s3.region": "us-east-1", "py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO"}
    table = StaticTable.from_metadata(metadata, properties=props)
    rows = table.scan(selected_fields=("offset", "partition", "key", "value")).to_arrow()
    amounts = [json.loads(v)["amount"] for v in rows.column("value").to_pylist()]
    out = {
        "version": version,
        "pyiceberg": {
            "rows": rows.num_rows,
            "sum": sum(amounts),
            "partitions": sorted(set(rows.column("partition").to_pylist())),
            "keys": len(set(rows.column("key").to_pylist())),
            "files": len(list(table.scan().plan_files())),
        },
    }
    objects = fs.get_file_info(pafs.FileSelector(folder, recursive=True))
    out["objects"] = sum(1 for o in objects if o.path.endswith(".parquet"))

    ext = site.getsitepackages()[0] + "/duckdb_ext/extensions"
    con = duckdb.connect(config={"extension_directory": ext,
                                 "autoinstall_known_extensions": False})
    for name in ("httpfs", "avro", "iceberg"):
        con.load_extension(name)
    con.execute(f"""CREATE SECRET (TYPE s3, KEY_ID '{key}', SECRET '{secret}',
        REGION 'us-east-1', ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)""")
    count, total, parts = con.execute(f"""
        SELECT count(*), sum(CAST(json_extract(decode(value), '$.amount') AS BIGINT)),
               count(DISTINCT partition)
        FROM iceberg_scan('{metadata}')""").fetchone()
    out["duckdb"] = {"rows": count, "sum": int(total or 0), "partitions": parts}

    if day:
        start = datetime.datetime.fromisoformat(day).replace(tzinfo=datetime.timezone.utc)
        end = start + datetime.timedelta(days=1)
        where = And(GreaterThanOrEqual("timestamp", start.isoformat()),
                    LessThan("timestamp", end.isoformat()))
        scan = table.scan(row_filter=where)
        out["day"] = {"files": len(list(scan.plan_files())), "rows": scan.to_arrow().num_rows}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
