-- Issue 13: the actor of an event is the verified identity. When a command's identity was
-- refused, `actor` stays empty and who the payload claimed to be is kept here, so the audit
-- log never names the person a forger claimed to be as the one who acted.
ALTER TABLE release_events ADD COLUMN claimed_actor text;
ALTER TABLE mini_service_events ADD COLUMN claimed_actor text;
