-- EXTEND_LEASES: renew the lease of a worker and of its pool processes.
-- ARGV: worker id, lease seconds, lease clock ('' = server time).
-- Returns how many holders were renewed (a lease already reaped is not revived).
local worker, lease_seconds, clock = nextarg(), nextarg(), nextarg()
return extend_leases(worker, lease_seconds, clock)
