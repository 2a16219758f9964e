"""Every Redis key and channel liteq uses, in one place.

All names start with a prefix (``"liteq:"`` by default; Celery's transport option
``broker_transport_options={"global_keyprefix": "myapp:"}`` changes it), so several
apps share one Redis database without seeing each other's tasks. Lua scripts never
spell a name themselves: they get full key names, or the prefix of a family of keys
(``message_prefix`` + message id), from here.

The data model (``P`` is the prefix)::

    P seq               STRING  arrival counter; a message id is <run_at µs><seq> in hex
    P queues            SET     names of queues that have held messages
    P m:<id>            HASH    one message: envelope fields, deliveries, holder, token
    P q:<queue>         ZSET    ready messages: score -priority, member id, so the
                                 lowest entry is the next to run (priority, then run_at
                                 and arrival, both encoded in the id)
    P s:<queue>         ZSET    scheduled (eta) messages: score eta, member id
    P held:<holder>     SET     ids of the messages one lease holder holds
    P leases            ZSET    holder -> lease deadline (Redis server seconds)
    P holders           ZSET    every holder with a lease, all score 0: a lexicographic
                                 range finds a worker and its pool processes (``w/N``)
    P claims            HASH    holder -> its last claim ("<claim id> <id> <id>..."),
                                 replayed if that claim is retried after a lost reply
    P leased            HASH    queue -> leased messages (for depth())
    P inflight          HASH    task id -> leased messages (for is_leased())
    P pub:<publish id>  STRING  marks a publish as done for a while, so a publish
                                 retried after a lost reply is not applied twice
    P settled:<id>      STRING  the token a message was settled with, for a while, so a
                                 settle retried after a lost reply is still accepted
    P r:<task id>       HASH    a task's result; expires by itself (PEXPIRE)
    P g:<group id>      STRING  a saved group (GroupResult.save()); expires by itself
    P beat              SET     names of beat entries
    P beat:<name>       HASH    one beat entry: definition, schedule, run times
    P workers           HASH    worker id -> json (hostname, pid, queues, ...)
    P workers:info      HASH    worker id -> json (what its last heartbeat reported)
    P heartbeats        ZSET    worker id -> last heartbeat (epoch seconds)
    P revoked           HASH    revoked task id -> json (terminate, signal)
    P revoked:until     ZSET    revoked task id -> when the revocation is forgotten
                                 (epoch seconds; inf: never)
    P rl:<key>          HASH    a rate-limit token bucket: tokens, updated (server time)
    P chord:<id>        ZSET    header tasks of a chord whose results are stored, by
                                 their place in the header
    P chord:<id>:by     STRING  the header task whose result completed the chord
    P paused            SET     names of paused queues (claims skip them)
    P flow:<key>        HASH    a flow key: used (slots held by ready or leased
                                 messages), waiting (messages blocked on it)
    P gate:<key>        ZSET    messages blocked on a flow key, as a ready queue
                                 (score -priority, member id)
    P flowdue           ZSET    flow key -> when to look at it again (epoch seconds:
                                 its next rate token, or a blocked message's eta)
    P rates             HASH    task name -> rate set at run time ('0': none)
    P blocked           HASH    queue -> blocked messages (for depth())
    P uq:<key>          STRING  the task id holding a unique key (PX: unique_for)
    P control           STREAM  remote control commands for workers (app.control)
    P reply:<ticket>    HASH    hostname -> json reply to one control command
    P stats:<minute>    HASH    per-minute task counters (minute: epoch seconds):
                                 "<task>\t<state>\t<bucket>" -> count, and the same
                                 field + "\tr" -> total run time; expires after 8 days
    P stats:total       HASH    the same, summed since the first task (never expires)

    channels:
    P wake:<queue>      a message was published to (or returned to) the queue
    P done:<task id>    a result for the task (or a reply to control ticket) was stored
    P wake-control      a control command was added to ``P control``

On a Redis Cluster the prefix carries a hash tag (:func:`hash_tagged`: ``"{liteq}:"``),
so every key of one app hashes to one slot, and a script may touch any of them.

Example:
    >>> keys = Keys("myapp:")
    >>> keys.ready("celery"), keys.result("abc")
    ('myapp:q:celery', 'myapp:r:abc')
"""

from __future__ import annotations

DEFAULT_PREFIX = "liteq:"


def hash_tagged(prefix: str) -> str:
    """``prefix`` with a Redis Cluster hash tag, unless it has one already.

    Redis hashes only the part between the first ``{`` and the next ``}`` of a key, so
    every key under ``"{liteq}:"`` lives in the same slot.

    Example:
        >>> hash_tagged("liteq:"), hash_tagged("app1:"), hash_tagged("{shop}:tasks:")
        ('{liteq}:', '{app1}:', '{shop}:tasks:')
    """
    start = prefix.find("{")
    if start >= 0 and prefix.find("}", start + 2) > start:
        return prefix
    name = prefix.rstrip(":") or "liteq"
    return f"{{{name}}}:"


class Keys:
    """Key and channel names under one prefix."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        p = prefix
        self.seq = f"{p}seq"
        self.queues = f"{p}queues"
        self.message_prefix = f"{p}m:"
        self.ready_prefix = f"{p}q:"
        self.scheduled_prefix = f"{p}s:"
        self.held_prefix = f"{p}held:"
        self.leases = f"{p}leases"
        self.holders = f"{p}holders"
        self.claims = f"{p}claims"
        self.leased = f"{p}leased"
        self.inflight = f"{p}inflight"
        self.publish_prefix = f"{p}pub:"
        self.settled_prefix = f"{p}settled:"
        self.result_prefix = f"{p}r:"
        self.group_prefix = f"{p}g:"
        self.beat = f"{p}beat"
        self.beat_prefix = f"{p}beat:"
        self.workers = f"{p}workers"
        self.worker_info = f"{p}workers:info"
        self.heartbeats = f"{p}heartbeats"
        self.revoked = f"{p}revoked"
        self.revoked_until = f"{p}revoked:until"
        self.ratelimit_prefix = f"{p}rl:"
        self.chord_prefix = f"{p}chord:"
        self.wake_prefix = f"{p}wake:"
        self.done_prefix = f"{p}done:"
        self.paused = f"{p}paused"
        self.flow_prefix = f"{p}flow:"
        self.gate_prefix = f"{p}gate:"
        self.flow_due = f"{p}flowdue"
        self.unique_prefix = f"{p}uq:"
        self.blocked = f"{p}blocked"
        self.rate_overrides = f"{p}rates"
        self.control = f"{p}control"
        self.control_wake = f"{p}wake-control"
        self.reply_prefix = f"{p}reply:"
        self.stats_prefix = f"{p}stats:"
        self.stats_total = f"{p}stats:total"

    def message(self, message_id: str) -> str:
        return f"{self.message_prefix}{message_id}"

    def ready(self, queue: str) -> str:
        return f"{self.ready_prefix}{queue}"

    def scheduled(self, queue: str) -> str:
        return f"{self.scheduled_prefix}{queue}"

    def held(self, holder: str) -> str:
        return f"{self.held_prefix}{holder}"

    def published(self, publish_id: str) -> str:
        return f"{self.publish_prefix}{publish_id}"

    def result(self, task_id: str) -> str:
        return f"{self.result_prefix}{task_id}"

    def group(self, group_id: str) -> str:
        return f"{self.group_prefix}{group_id}"

    def beat_entry(self, name: str) -> str:
        return f"{self.beat_prefix}{name}"

    def reply(self, ticket: str) -> str:
        """The replies to one control command."""
        return f"{self.reply_prefix}{ticket}"

    def stats(self, minute: float) -> str:
        """The task counters of the minute starting at ``minute`` (epoch seconds)."""
        return f"{self.stats_prefix}{int(minute)}"

    def wake(self, queue: str) -> str:
        """The channel idle workers of ``queue`` listen on."""
        return f"{self.wake_prefix}{queue}"

    def done(self, task_id: str) -> str:
        """The channel callers waiting for ``task_id``'s result listen on."""
        return f"{self.done_prefix}{task_id}"

    def any_done(self) -> str:
        """The pattern matching every task's result channel (for a pattern listener)."""
        escaped = "".join(f"\\{ch}" if ch in "*?[]\\" else ch for ch in self.done_prefix)
        return f"{escaped}*"


__all__ = ["DEFAULT_PREFIX", "Keys", "hash_tagged"]
