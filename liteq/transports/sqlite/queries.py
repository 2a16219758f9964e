"""The hot-path SQL, named. Each statement is served by an index of ``schema.py``
(``tests/transports/test_sqlite.py`` checks with ``EXPLAIN QUERY PLAN``).

Message states are the constants of ``schema.py`` (READY, LEASED, SCHEDULED).
"""

from __future__ import annotations

from functools import lru_cache

from liteq.states import READY_STATES
from liteq.transports.sqlite.rows import (
    CLAIMED_COLUMNS,
    LOST_COLUMNS,
    MESSAGE_COLUMNS,
    MESSAGE_COLUMNS_FLOW,
    RESULT_COLUMNS,
)
from liteq.transports.sqlite.schema import BLOCKED, LEASED, READY, SCHEDULED

_MESSAGE_COLUMNS = MESSAGE_COLUMNS

#: Store one message (ready, or scheduled when its eta is in the future).
PUBLISH = f"INSERT INTO liteq_messages ({_MESSAGE_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"

#: Rows per multi-row insert (11 parameters each: well under SQLite's 32,766 limit).
PUBLISH_CHUNK = 64


@lru_cache(maxsize=4)
def publish_many(count: int) -> str:
    """PUBLISH_MANY: ``count`` messages in one INSERT."""
    values = ",".join(["(?,?,?,?,?,?,?,?,?,?,?)"] * count)
    return f"INSERT INTO liteq_messages ({_MESSAGE_COLUMNS}) VALUES {values}"


#: Make scheduled messages of one queue ready once their eta has come.
PROMOTE = (
    f"UPDATE liteq_messages SET state = {READY} "
    f"WHERE state = {SCHEDULED} AND queue = :queue AND run_at <= :now"
)


def _marks(count: int) -> str:
    return ",".join(f":q{n}" for n in range(count))


@lru_cache(maxsize=64)
def promote(queue_count: int) -> str:
    """PROMOTE for ``:q0 .. :qN`` in one statement (one index seek per queue, in SQLite:
    a worker of 200 queues pays one statement per claim, not 200)."""
    if queue_count == 1:
        return PROMOTE.replace(":queue", ":q0")
    return (f"UPDATE liteq_messages SET state = {READY} WHERE state = {SCHEDULED} "
            f"AND queue IN ({_marks(queue_count)}) AND run_at <= :now")


@lru_cache(maxsize=64)
def claimable(queue_count: int) -> str:
    """Is anything ready, or scheduled and due, in ``:q0 .. :qN``? (one read)"""
    marks = _marks(queue_count)
    return (f"SELECT EXISTS (SELECT 1 FROM liteq_messages WHERE state = {READY} "
            f"AND queue IN ({marks})) OR EXISTS (SELECT 1 FROM liteq_messages "
            f"WHERE state = {SCHEDULED} AND queue IN ({marks}) AND run_at <= :now)")

#: Columns a claim returns (``rows.ClaimedRow``).
_CLAIMED = CLAIMED_COLUMNS

_LEASE = (
    f"UPDATE liteq_messages SET state = {LEASED}, worker_id = :worker, "
    "token = random(), deliveries = deliveries + 1 WHERE id IN ({ids}) RETURNING " + _CLAIMED
)

#: The claimer's lease: created, or pushed out, in the claim's own transaction.
HOLD_LEASE = (
    "INSERT INTO liteq_leases (holder, lease_until) VALUES (:worker, :lease_until) "
    "ON CONFLICT (holder) DO UPDATE SET lease_until = max(lease_until, excluded.lease_until)"
)

_READY_IN_QUEUE = (
    "SELECT id, priority, run_at FROM liteq_messages "
    f"WHERE state = {READY} AND queue = :q{{n}} ORDER BY priority DESC, run_at, id LIMIT :limit"
)


@lru_cache(maxsize=64)
def claim(queue_count: int) -> str:
    """CLAIM: lease up to ``:limit`` ready messages of ``:q0 .. :qN``, best first.

    One indexed scan per queue (each stops after ``limit`` rows), merged by priority
    (higher first), eta, then arrival; the whole claim is O(queues * limit * log n).
    RETURNING gives rows in no particular order, so callers sort the batch.
    """
    if queue_count == 1:
        ids = f"SELECT id FROM liteq_messages WHERE state = {READY} AND queue = :q0 " \
              "ORDER BY priority DESC, run_at, id LIMIT :limit"
    else:
        branches = " UNION ALL ".join(
            f"SELECT * FROM ({_READY_IN_QUEUE.format(n=n)})" for n in range(queue_count)
        )
        ids = f"SELECT id FROM ({branches}) ORDER BY priority DESC, run_at, id LIMIT :limit"
    return _LEASE.format(ids=ids)


#: Settle one message: remove it if its lease token still matches.
ACK = f"DELETE FROM liteq_messages WHERE id = ? AND token = ? AND state = {LEASED}"


@lru_cache(maxsize=256)
def ack_many(count: int) -> str:
    """ACK_MANY: settle ``count`` messages in one statement, each fenced by its token.

    Parameters: the ids, then (id, token) pairs. Returns the ids removed. (A row-value
    ``(id, token) IN (VALUES ...)`` would scan the leased rows; this searches by id.)
    """
    marks = ",".join("?" * count)
    tokens = " ".join(["WHEN ? THEN ?"] * count)
    return (f"DELETE FROM liteq_messages WHERE id IN ({marks}) AND state = {LEASED} "
            f"AND token = CASE id {tokens} END RETURNING id")

#: Return one leased message to wait as scheduled until :run_at (uncounted).
RELEASE_UNTIL = (
    f"UPDATE liteq_messages SET state = {SCHEDULED}, run_at = ?, worker_id = NULL, token = NULL, "
    f"deliveries = max(deliveries - 1, 0) WHERE id = ? AND token = ? AND state = {LEASED}"
)

#: TAKE_TOKEN: refill a bucket for the time passed and take one token if it has one.
#: Returns the tokens left when one was taken, no row when the bucket is short.
TAKE_TOKEN = (
    "INSERT INTO liteq_ratelimits (key, tokens, updated) VALUES (:key, :capacity - 1, :now) "
    "ON CONFLICT (key) DO UPDATE SET "
    "tokens = min(:capacity, tokens + (:now - updated) * :rate) - 1, updated = :now "
    "WHERE min(:capacity, tokens + (:now - updated) * :rate) >= 1 RETURNING tokens"
)

#: How many tokens a bucket holds now (after a refused TAKE_TOKEN).
BUCKET = "SELECT min(:capacity, tokens + (:now - updated) * :rate) FROM liteq_ratelimits " \
    "WHERE key = :key"

#: Return one leased message to the queue without counting the delivery.
#: REDELIVER: put a claimed message back in the queue, its delivery counted
#: (``Reject(requeue=True)``).
REDELIVER = (
    f"UPDATE liteq_messages SET state = {READY}, worker_id = NULL, token = NULL "
    f"WHERE id = ? AND token = ? AND state = {LEASED}"
)

RELEASE = (
    f"UPDATE liteq_messages SET state = {READY}, worker_id = NULL, token = NULL, "
    f"deliveries = max(deliveries - 1, 0) WHERE id = ? AND token = ? AND state = {LEASED}"
)

#: Renew every lease a worker (``:lo``) and its pool processes (``:lo/N``) hold:
#: ids in [worker, worker + "0") are the worker's own and its children's.
EXTEND_LEASES = (
    "UPDATE liteq_leases SET lease_until = :lease_until WHERE holder >= :lo AND holder < :hi"
)

#: A lease, if it is still held: what reaping needs to know.
LEASE_INFO = (
    f"SELECT {LOST_COLUMNS} FROM liteq_messages "
    f"WHERE id = ? AND token = ? AND state = {LEASED}"
)

#: Put back, uncounted, every lease of one (dead) pool process: it never started them.
RELEASE_WORKER = (
    f"UPDATE liteq_messages SET state = {READY}, worker_id = NULL, token = NULL, "
    f"deliveries = max(deliveries - 1, 0) WHERE state = {LEASED} AND worker_id = ?"
)

#: Forget a holder's lease (it holds nothing any more).
DROP_LEASE = "DELETE FROM liteq_leases WHERE holder = ?"

#: Is anything claimable? (a read, so idle wake-ups need not take the write lock)
READY_EXISTS = f"SELECT 1 FROM liteq_messages WHERE state = {READY} AND queue = ? LIMIT 1"
DUE_EXISTS = (
    f"SELECT 1 FROM liteq_messages WHERE state = {SCHEDULED} AND queue = ? AND run_at <= ? "
    "LIMIT 1"
)

#: Messages whose holder's lease ran out.
EXPIRED = (
    "SELECT " + ", ".join(f"m.{name}" for name in LOST_COLUMNS.split(", ")) + " "
    "FROM liteq_leases AS l CROSS JOIN liteq_messages AS m "  # CROSS: leases outer
    f"ON m.state = {LEASED} AND m.worker_id = l.holder "
    "WHERE l.lease_until < :now"
)

#: Holders whose lease ran out.
EXPIRED_HOLDERS = "SELECT holder FROM liteq_leases WHERE lease_until < :now"

#: Leased messages whose holder has no lease at all. liteq never makes one (a claim
#: holds its lease in the same transaction); this is the safety net, and it reads only
#: the leased rows (the in-flight set), never the queue.
ORPHANED = (
    f"SELECT {LOST_COLUMNS} FROM liteq_messages "
    f"WHERE state = {LEASED} AND worker_id NOT IN (SELECT holder FROM liteq_leases)"
)

#: Put a message whose lease was lost back in the queue (the delivery counts).
REQUEUE = f"UPDATE liteq_messages SET state = {READY}, worker_id = NULL, token = NULL WHERE id = ?"

#: Drop a message whose lease was lost and that will not run again.
DROP = "DELETE FROM liteq_messages WHERE id = ?"

#: Messages no claim can ever serve (rows another program wrote: a state claims never
#: match, a queue name that is not text, a scheduled time that is not a number, a lease
#: without holder or token), with the reason. A full scan: run rarely (housekeeping,
#: ``liteq doctor``).
UNREACHABLE = (
    f"SELECT * FROM (SELECT {LOST_COLUMNS}, CASE "
    f"WHEN typeof(state) != 'integer' OR state NOT IN ({READY}, {LEASED}, {SCHEDULED}, "
    f"{BLOCKED}) "
    "THEN 'its state ' || quote(state) || ' is none a claim serves' "
    "WHEN typeof(queue) != 'text' THEN 'its queue name is ' || typeof(queue) || ', not text' "
    f"WHEN state = {SCHEDULED} AND typeof(run_at) NOT IN ('integer', 'real') "
    "THEN 'its eta (run_at) is ' || typeof(run_at) || ', not a number' "
    f"WHEN state = {LEASED} AND (worker_id IS NULL OR token IS NULL) "
    "THEN 'it is leased without a holder or token' "
    "END AS reason FROM liteq_messages) WHERE reason IS NOT NULL LIMIT :limit"
)

#: Every lease, when the machine has rebooted since they were taken.
EXPIRE_ALL_LEASES = "UPDATE liteq_leases SET lease_until = 0"

#: When the next flow key (a rate token, a blocked eta) is due (flow.py; partial index).
FLOW_DUE = "SELECT min(due) FROM liteq_flow WHERE due IS NOT NULL"

#: When the next scheduled message of a queue is due.
NEXT_ETA = f"SELECT min(run_at) FROM liteq_messages WHERE state = {SCHEDULED} AND queue = ?"

_RESULT_COLUMNS = RESULT_COLUMNS

#: Store a final result (settlement): it replaces whatever was stored before (the
#: times it was received and started stay when the new record does not know them).
STORE_RESULT = (
    f"INSERT INTO liteq_results ({_RESULT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT (task_id) DO UPDATE SET state = excluded.state, "
    "content_type = excluded.content_type, payload = excluded.payload, "
    "traceback = excluded.traceback, task_name = excluded.task_name, "
    "worker = excluded.worker, retries = excluded.retries, date_done = excluded.date_done, "
    "expires_at = excluded.expires_at, extended = coalesce(excluded.extended, extended), "
    "children = excluded.children, "
    "date_received = coalesce(excluded.date_received, date_received), "
    "date_started = coalesce(excluded.date_started, date_started)"
)

#: Store an interim state (STARTED, progress, RETRY): never over a final one.
STORE_STATE = STORE_RESULT + " WHERE liteq_results.state NOT IN ({})".format(
    ", ".join(f"'{state}'" for state in sorted(READY_STATES)))

#: Does the lease still hold? (fences interim states written by a running task)
LEASE_HELD = f"SELECT 1 FROM liteq_messages WHERE id = ? AND token = ? AND state = {LEASED}"

#: One stored result.
GET_RESULT = f"SELECT {_RESULT_COLUMNS} FROM liteq_results WHERE task_id = ?"
#: An administrator's search by state (no index: results are read, never scanned, on
#: the task path).
FIND_RESULTS = (
    f"SELECT {_RESULT_COLUMNS} FROM liteq_results WHERE state = :state "
    "AND (:name IS NULL OR task_name = :name) ORDER BY date_done LIMIT :limit"
)

#: Results past their expiry, oldest first, a bounded batch at a time.
EXPIRE_RESULTS = (
    "DELETE FROM liteq_results WHERE task_id IN (SELECT task_id FROM liteq_results "
    "WHERE expires_at IS NOT NULL AND expires_at < :now ORDER BY expires_at LIMIT :limit)"
)

#: Save a group's members (GroupResult.save()), replacing an earlier save.
SAVE_GROUP = "INSERT OR REPLACE INTO liteq_groups (group_id, payload, expires_at) VALUES (?, ?, ?)"
#: A saved group, unless it expired (the expiry pass may not have deleted it yet).
GET_GROUP = (
    "SELECT payload FROM liteq_groups WHERE group_id = ? "
    "AND (expires_at IS NULL OR expires_at >= ?)"
)
FORGET_GROUP = "DELETE FROM liteq_groups WHERE group_id = ?"
EXPIRE_GROUPS = "DELETE FROM liteq_groups WHERE expires_at IS NOT NULL AND expires_at < ?"

#: Is a task's message leased (RECEIVED)? Searches the in-flight rows only: messages
#: have no task id index, which would cost every enqueue and ack a B-tree update.
IS_LEASED = (
    "SELECT 1 FROM liteq_messages INDEXED BY liteq_messages_worker "
    f"WHERE state = {LEASED} AND task_id = ? LIMIT 1"
)

#: What leased messages there are, and their holders (the in-flight set).
IN_FLIGHT = (
    "SELECT worker_id, task_id, task_name, queue FROM liteq_messages "
    f"INDEXED BY liteq_messages_worker WHERE state = {LEASED} LIMIT ?"
)

#: Any revocation at all? (claims look up their task ids only when there is one)
ANY_REVOKED = "SELECT 1 FROM liteq_revoked LIMIT 1"

#: Revocations among some task ids (bound as a json array).
REVOKED_AMONG = (
    "SELECT task_id, terminate, signal FROM liteq_revoked "
    "WHERE task_id IN (SELECT value FROM json_each(?))"
)

#: Forget revocations past their time.
EXPIRE_REVOKED = "DELETE FROM liteq_revoked WHERE expires_at IS NOT NULL AND expires_at < ?"
EXPIRE_CHORDS = "DELETE FROM liteq_chord_parts WHERE expires_at IS NOT NULL AND expires_at < ?"

#: A chord's header task finished: count it once (the primary key ignores a repeat).
CHORD_PART_ADD = (
    "INSERT OR IGNORE INTO liteq_chord_parts "
    "(chord_id, member_id, position, completes, expires_at) VALUES (?, ?, ?, 0, ?)"
)
CHORD_PART_COUNT = "SELECT count(*) FROM liteq_chord_parts WHERE chord_id = ?"
CHORD_PART_COMPLETES = (
    "UPDATE liteq_chord_parts SET completes = 1 WHERE chord_id = ? AND member_id = ?"
)
CHORD_PART_GET = "SELECT completes FROM liteq_chord_parts WHERE chord_id = ? AND member_id = ?"
CHORD_MEMBERS = "SELECT member_id FROM liteq_chord_parts WHERE chord_id = ? ORDER BY position"



@lru_cache(maxsize=64)
def count_tasks(rows: int) -> str:
    """COUNT_TASKS: add ``rows`` (minute, task_name, state, bucket, count, runtime)
    groups to the per-minute task counters, in the settle transaction (one statement
    per settle batch; the primary key is the conflict target, so no other index)."""
    values = ",".join(["(?,?,?,?,?,?)"] * rows)
    return ("INSERT INTO liteq_stats (minute, task_name, state, bucket, count, runtime) "
            f"VALUES {values} ON CONFLICT (minute, task_name, state, bucket) DO UPDATE "
            "SET count = count + excluded.count, runtime = runtime + excluded.runtime")


#: Fold per-minute counters older than :before into the minute-0 rows (sums kept
#: for ever, so Prometheus counters never go down), then delete them.
FOLD_COUNTS = (
    "INSERT INTO liteq_stats (minute, task_name, state, bucket, count, runtime) "
    "SELECT 0, task_name, state, bucket, sum(count), sum(runtime) FROM liteq_stats "
    "WHERE minute > 0 AND minute < :before GROUP BY task_name, state, bucket "
    "ON CONFLICT (minute, task_name, state, bucket) DO UPDATE "
    "SET count = count + excluded.count, runtime = runtime + excluded.runtime"
)
DROP_COUNTS = "DELETE FROM liteq_stats WHERE minute > 0 AND minute < :before"
#: Counter rows of the minutes at or after a time.
COUNTS_SINCE = (
    "SELECT minute, task_name, state, bucket, count, runtime FROM liteq_stats "
    "WHERE minute >= ? ORDER BY minute"
)
#: Every counter summed per task, state and bucket.
COUNT_TOTALS = (
    "SELECT 0.0, task_name, state, bucket, sum(count), sum(runtime) FROM liteq_stats "
    "GROUP BY task_name, state, bucket"
)

#: Advance a beat entry only if no other beat did since we read it (compare-and-set).
BEAT_ADVANCE = (
    "UPDATE liteq_beat SET next_run_at = :next, last_run_at = coalesce(:fired, last_run_at), "
    "total_run_count = total_run_count + :count WHERE name = :name AND next_run_at = :expected"
)

__all__ = [
    "ACK",
    "ANY_REVOKED",
    "BEAT_ADVANCE",
    "BUCKET",
    "CHORD_MEMBERS",
    "CHORD_PART_ADD",
    "CHORD_PART_COMPLETES",
    "CHORD_PART_COUNT",
    "CHORD_PART_GET",
    "COUNTS_SINCE",
    "COUNT_TOTALS",
    "DROP",
    "DROP_COUNTS",
    "DROP_LEASE",
    "DUE_EXISTS",
    "EXPIRED",
    "EXPIRED_HOLDERS",
    "EXPIRE_ALL_LEASES",
    "EXPIRE_CHORDS",
    "EXPIRE_GROUPS",
    "EXPIRE_RESULTS",
    "EXPIRE_REVOKED",
    "EXTEND_LEASES",
    "FIND_RESULTS",
    "FLOW_DUE",
    "FOLD_COUNTS",
    "FORGET_GROUP",
    "GET_GROUP",
    "GET_RESULT",
    "HOLD_LEASE",
    "IN_FLIGHT",
    "IS_LEASED",
    "LEASE_HELD",
    "LEASE_INFO",
    "MESSAGE_COLUMNS_FLOW",
    "NEXT_ETA",
    "ORPHANED",
    "PROMOTE",
    "PUBLISH",
    "READY_EXISTS",
    "REDELIVER",
    "RELEASE",
    "RELEASE_UNTIL",
    "RELEASE_WORKER",
    "REQUEUE",
    "REVOKED_AMONG",
    "SAVE_GROUP",
    "STORE_RESULT",
    "STORE_STATE",
    "TAKE_TOKEN",
    "UNREACHABLE",
    "ack_many",
    "claim",
    "claimable",
    "count_tasks",
    "promote",
    "publish_many",
]
