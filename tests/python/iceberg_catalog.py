"""Talks to a Pyralog node's Iceberg REST catalog as engines and plain HTTP clients do.

Usage: iceberg_catalog.py CATALOG_URI S3_ENDPOINT KEY SECRET [TOKEN]

Prints one JSON object:
- "http": what raw requests get (status codes of listing, a missing table, another
  namespace, a create-table POST, and the listed table names);
- without TOKEN, also "pyiceberg" (tables listed, rows and sum of `amount` of
  pyralog.orders loaded through the catalog) and "duckdb" (the same through ATTACH ... TYPE
  iceberg).
"""

import json
import site
import sys
import urllib.error
import urllib.request


def http(uri, method="GET", token=None, body=None):
    req = urllib.request.Request(uri, method=method, data=body)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        return e.code, json.loads(text) if text else None


def main():
    catalog, endpoint, key, secret = sys.argv[1:5]
    token = sys.argv[5] if len(sys.argv) > 5 else None
    ns = f"{catalog}/v1/namespaces/pyralog"
    listed, tables = http(f"{ns}/tables", token=token)
    out = {"http": {
        "list": listed,
        "tables": sorted(t["name"] for t in (tables or {}).get("identifiers", [])),
        "load_orders": http(f"{ns}/tables/orders", token=token)[0],
        "load_missing": http(f"{ns}/tables/missing", token=token)[0],
        "other_namespace": http(f"{catalog}/v1/namespaces/other/tables", token=token)[0],
        "create": http(f"{ns}/tables", "POST", token, json.dumps({"name": "x"}).encode())[0],
    }}
    if token is None:
        from pyiceberg.catalog import load_catalog
        props = {"type": "rest", "uri": catalog, "s3.endpoint": endpoint,
                 "s3.access-key-id": key, "s3.secret-access-key": secret,
                 "s3.region": "us-east-1",
                 "py-io-impl": "pyiceberg.io.pyarrow.PyArrowFileIO"}
        cat = load_catalog("pyralog", **props)
        names = sorted(t[-1] for t in cat.list_tables("pyralog"))
        rows = cat.load_table("pyralog.orders").scan(selected_fields=("value",)).to_arrow()
        total = sum(json.loads(v)["amount"] for v in rows.column("value").to_pylist())
        out["pyiceberg"] = {"tables": names, "rows": rows.num_rows, "sum": total}

        import duckdb
        ext = site.getsitepackages()[0] + "/duckdb_ext/extensions"
        con = duckdb.connect(config={"extension_directory": ext,
                                     "autoinstall_known_extensions": False})
        for name in ("httpfs", "avro", "iceberg"):
            con.load_extension(name)
        host = endpoint.split("://", 1)[1]
        con.execute(f"""CREATE SECRET (TYPE s3, KEY_ID '{key}', SECRET '{secret}',
            REGION 'us-east-1', ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)""")
        con.execute(f"""ATTACH 'pyralog' AS lake (TYPE iceberg, ENDPOINT '{catalog}',
            AUTHORIZATION_TYPE 'none')""")
        count, total = con.execute("""SELECT count(*),
            sum(CAST(json_extract(decode(value), '$.amount') AS BIGINT))
            FROM lake.pyralog.orders""").fetchone()
        out["duckdb"] = {"rows": count, "sum": int(total or 0)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
