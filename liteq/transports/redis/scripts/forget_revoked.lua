-- FORGET_REVOKED: drop revocations past their time. ARGV: now (wall).
-- Returns how many were dropped.
return forget_revoked(nextarg())
