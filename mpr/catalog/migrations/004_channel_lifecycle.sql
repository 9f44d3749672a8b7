-- Issue 15: a channel's life after go-live. The channel workflow rolls a version back, takes
-- the channel offline and brings it back; every change of a version (released, archived,
-- rolled back, restored) is an event, so a restored version keeps every date it had.

-- A rolled-back version was stable and was taken down by a rollback; it is never stable and
-- archived at once (stable_eligible stays stage = 'RELEASED').
ALTER TABLE releases DROP CONSTRAINT releases_stage_check;
ALTER TABLE releases ADD CONSTRAINT releases_stage_check CHECK (stage IN (
    'BUILDING', 'BUILD_FAILED', 'COMPATIBILITY_TESTING', 'READY_TO_APPLY', 'UNDER_REVIEW',
    'REJECTED', 'RELEASE_PREPARATION', 'WHITELIST_TESTING', 'GRAYSCALE', 'RELEASED',
    'CANCELED', 'ARCHIVED', 'ROLLED_BACK'
));

-- Offline: nothing is served, though the stable version is kept for bring_online. Who took it
-- down, as which kind of actor: an admin's own takedown, or a platform or partner reviewer's.
ALTER TABLE channels
    ADD COLUMN offline_kind text CHECK (offline_kind IN ('admin', 'platform', 'partner')),
    ADD COLUMN offline_reason text,
    ADD COLUMN offline_by text,
    ADD COLUMN offline_at timestamptz,
    ADD CONSTRAINT channels_offline_complete CHECK (
        (offline_kind IS NULL) = (offline_reason IS NULL)
        AND (offline_kind IS NULL) = (offline_by IS NULL)
        AND (offline_kind IS NULL) = (offline_at IS NULL)
    ),
    ADD CONSTRAINT channels_offline_has_stable CHECK (
        offline_kind IS NULL OR stable_version IS NOT NULL
    );

-- The channel's commands, accepted and refused, as release_events are for releases.
CREATE TABLE channel_events (
    event_id text PRIMARY KEY,
    mini_program_id text NOT NULL,
    target_app text NOT NULL,
    environment text NOT NULL,
    seq int NOT NULL,
    command text NOT NULL,
    actor text,
    claimed_actor text,
    actor_kind text,
    accepted boolean NOT NULL,
    reason text,
    state_before text NOT NULL,
    state_after text NOT NULL,
    payload jsonb,
    at timestamptz NOT NULL
);

CREATE INDEX channel_events_channel ON channel_events (mini_program_id, target_app, environment,
                                                       at);

-- What happened to each version on its channel, one row per change, never overwritten:
-- `versions` is built from these.
CREATE TABLE version_changes (
    event_id text NOT NULL,
    ordinal int NOT NULL,
    mini_program_id text NOT NULL,
    target_app text NOT NULL,
    environment text NOT NULL,
    release_id text NOT NULL REFERENCES releases,
    version text NOT NULL,
    change text NOT NULL CHECK (change IN ('released', 'archived', 'rolled_back', 'restored')),
    actor text,
    reason text,
    at timestamptz NOT NULL,
    PRIMARY KEY (event_id, ordinal)
);

CREATE INDEX version_changes_channel ON version_changes (mini_program_id, target_app,
                                                         environment, at);

-- Versions released before this migration: their release and archive dates, from the release
-- events and rows already recorded.
INSERT INTO version_changes (event_id, ordinal, mini_program_id, target_app, environment,
                             release_id, version, change, actor, reason, at)
SELECT e.event_id, 0, r.mini_program_id, r.target_app, r.environment, r.release_id, r.version,
       'released', e.actor, NULL, e.at
FROM release_events e JOIN releases r USING (release_id)
WHERE e.accepted AND e.stage_after = 'RELEASED' AND e.stage_before <> 'RELEASED';

INSERT INTO version_changes (event_id, ordinal, mini_program_id, target_app, environment,
                             release_id, version, change, actor, reason, at)
SELECT 'archived-before-004:' || r.release_id, 0, r.mini_program_id, r.target_app,
       r.environment, r.release_id, r.version, 'archived', NULL,
       'a newer version was released', r.archived_at
FROM releases r WHERE r.stage = 'ARCHIVED';
