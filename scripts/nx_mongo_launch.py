"""Start nx-27017 (the MongoDB wire server the MongoDB store tests run
against) with the fixes the Rust `mongodb` driver needs.

Run it with the Python of a virtualenv that holds `nx-27017==0.8.1` (and so
its dependency neosqlite); it takes exactly the arguments of the `nx-27017`
command, for example

    V/bin/python scripts/nx_mongo_launch.py -d --host 127.0.0.1 -p PORT \
        --db DIR/t.db --log-file DIR/nx.log --pid-file DIR/nx.pid

`scripts/mongo-test-server.sh` does this. The launcher patches the server
in-process and then hands over to nx-27017's own command-line entry point.

What nx-27017 0.8.1 gets wrong, and what is done about it:

1. Cursor ids of 32 bits. A reply's `cursor.id` is a Python int, and BSON
   encodes an int that fits in 32 bits as Int32. Data cursors happen to
   start at 10**12 (Int64 anyway), but change-stream cursors count from
   1000, so `collection.watch()` fails in the Rust driver, which requires an
   Int64 cursor id. Fix: every reply passes through one function before it
   is encoded (`nx_27017.wire_protocol._convert_objectids`); it is wrapped
   so that a non-zero integer `cursor.id` becomes `bson.Int64`.

2. Change events of the wrong types. Each event in a change-stream batch
   carries `clusterTime` as a datetime, where the driver expects a BSON
   Timestamp, and `fullDocument` as the document's stored JSON parsed with
   plain `json`, so dates and ObjectIds arrive as `{"$date": ...}` and
   `{"$oid": ...}` sub-documents instead of BSON dates and ObjectIds. Fix:
   in the same reply hook, events in `firstBatch`/`nextBatch` get a
   Timestamp (the event's seconds, with a per-process increasing increment)
   and their `fullDocument` is decoded again as MongoDB extended JSON.

3. Updates that store the wrong types. neosqlite applies simple updates
   with SQLite's `json_set`, and that path writes a datetime given to
   `$set`, `$setOnInsert`, `$max` or `$min` as a string and a bool as 0/1
   (values nested in a sub-document or array are stored correctly; a
   top-level field, or a dotted path, is not). Fix:
   `SqlUpdatesMixin._can_use_sql_updates` is wrapped to answer "no" for an
   update whose operators above give any field a datetime or bool value,
   so neosqlite takes its Python update path, which keeps the types.
   Known cost: that path writes `$inc` on a dotted path as a literal dotted
   field name, so an update combining the two should be split.

Optional: with `NX_FORCE_FALLBACK=1` in the environment every update (and
query) takes neosqlite's Python path (`set_force_fallback(True)`), to rule
the SQL path out when a test misbehaves.

Every patched name is looked up before anything is patched; if one is
missing (another nx-27017 or neosqlite version), the launcher stops with a
message naming the version the fixes were written for, rather than starting
a server that silently lacks them.
"""

import datetime
import inspect
import itertools
import os
import sys
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

PINNED = "nx-27017==0.8.1"

# Operators whose datetime/bool operands neosqlite's SQL path stores wrongly.
TYPE_LOSING_OPERATORS = ("$set", "$setOnInsert", "$max", "$min")


def fail(message):
    print(f"nx_mongo_launch: {message}", file=sys.stderr)
    sys.exit(1)


def installed_versions():
    found = []
    for dist in ("nx-27017", "neosqlite"):
        try:
            found.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            found.append(f"{dist} not installed")
    return ", ".join(found)


def mismatch(what):
    fail(
        f"{what}. These patches are written for {PINNED}; found "
        f"{installed_versions()}. Install {PINNED} into the venv, or update "
        "scripts/nx_mongo_launch.py for the new version."
    )


def require(module_name, attr_path=None):
    """Return the module, or module_name.attr_path; stop if it is missing."""
    name = f"{module_name}.{attr_path}" if attr_path else module_name
    try:
        target = import_module(module_name)
        for part in attr_path.split(".") if attr_path else ():
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        mismatch(f"cannot find {name} ({exc})")
    return target


def require_parameters(func, where, expected):
    names = list(inspect.signature(func).parameters)
    if names[: len(expected)] != list(expected):
        mismatch(f"{where} takes {names}, expected {list(expected)}")


def code_refers_to(code, name):
    """Whether compiled code (or code nested in it, such as a generator
    expression) looks up the global or attribute `name`."""
    return name in code.co_names or any(
        code_refers_to(const, name)
        for const in code.co_consts
        if inspect.iscode(const)
    )


def require_call(caller, where, callee):
    """Stop unless caller's code refers to the name callee (so that patching
    callee actually changes what caller does)."""
    code = getattr(caller, "__code__", None)
    if code is None or not code_refers_to(code, callee):
        mismatch(f"{where} no longer uses {callee}")


def find_patch_points():
    """Look up everything that will be patched or called; patch nothing."""
    wire = require("nx_27017.wire_protocol")
    reply_hook = require("nx_27017.wire_protocol", "_convert_objectids")
    sql_module = "neosqlite.collection.query_helper._sql_updates"
    mixin = require(sql_module, "SqlUpdatesMixin")
    can_use_sql = require(sql_module, "SqlUpdatesMixin._can_use_sql_updates")
    internal_update = require(
        "neosqlite.collection.query_helper.update_operations",
        "UpdateOperationsMixin._internal_update",
    )
    set_force_fallback = require(
        "neosqlite.collection.query_helper.utils", "set_force_fallback"
    )
    cli_main = require("nx_27017.nx_27017", "main")

    require_parameters(reply_hook, "nx_27017.wire_protocol._convert_objectids", ["doc"])
    for name in ("build_op_msg_reply", "build_reply"):
        build = require("nx_27017.wire_protocol", f"ResponseBuilder.{name}")
        require_call(build, f"ResponseBuilder.{name}", "_convert_objectids")
    require_parameters(
        can_use_sql,
        "SqlUpdatesMixin._can_use_sql_updates",
        ["self", "update_spec", "doc_id", "original_doc"],
    )
    require_call(
        internal_update, "UpdateOperationsMixin._internal_update", "_can_use_sql_updates"
    )
    return {
        "wire_module": wire,
        "reply_hook": reply_hook,
        "sql_updates_mixin": mixin,
        "can_use_sql_updates": can_use_sql,
        "set_force_fallback": set_force_fallback,
        "cli_main": cli_main,
    }


# --- fixes 1 and 2: the shape of replies ---------------------------------

_timestamp_increments = itertools.count(1)


def as_bson_timestamp(moment):
    from bson.timestamp import Timestamp

    increment = next(_timestamp_increments) % (1 << 32) or 1
    return Timestamp(int(moment.timestamp()), increment)


def is_change_event(doc):
    return (
        isinstance(doc, dict)
        and "operationType" in doc
        and "documentKey" in doc
        and "clusterTime" in doc
    )


def fix_change_event(event):
    from bson import json_util

    if isinstance(event["clusterTime"], datetime.datetime):
        event["clusterTime"] = as_bson_timestamp(event["clusterTime"])
    full = event.get("fullDocument")
    if isinstance(full, dict):
        event["fullDocument"] = json_util.loads(json_util.dumps(full))


def fix_cursor(cursor):
    from bson.int64 import Int64

    cursor_id = cursor.get("id")
    if (
        isinstance(cursor_id, int)
        and not isinstance(cursor_id, (bool, Int64))
        and cursor_id != 0
    ):
        cursor["id"] = Int64(cursor_id)
    for batch_key in ("firstBatch", "nextBatch"):
        for doc in cursor.get(batch_key) or ():
            if is_change_event(doc):
                fix_change_event(doc)


def patch_reply_shapes(module, original_hook):
    def convert_reply(doc):
        converted = original_hook(doc)
        if isinstance(converted, dict) and isinstance(converted.get("cursor"), dict):
            fix_cursor(converted["cursor"])
        return converted

    module._convert_objectids = convert_reply


# --- fix 3: updates that lose types --------------------------------------


def loses_types_in_sql(update_spec):
    for operator in TYPE_LOSING_OPERATORS:
        fields = update_spec.get(operator)
        if isinstance(fields, dict) and any(
            isinstance(value, (bool, datetime.datetime)) for value in fields.values()
        ):
            return True
    return False


def patch_sql_update_choice(mixin, original_check):
    def can_use_sql_updates(self, update_spec, doc_id, original_doc=None):
        if isinstance(update_spec, dict) and loses_types_in_sql(update_spec):
            return False
        return original_check(self, update_spec, doc_id, original_doc)

    mixin._can_use_sql_updates = can_use_sql_updates


def main():
    points = find_patch_points()
    patch_reply_shapes(points["wire_module"], points["reply_hook"])
    patch_sql_update_choice(points["sql_updates_mixin"], points["can_use_sql_updates"])
    if os.environ.get("NX_FORCE_FALLBACK") == "1":
        points["set_force_fallback"](True)
    sys.argv[0] = "nx-27017"
    return points["cli_main"]()


if __name__ == "__main__":
    sys.exit(main())
