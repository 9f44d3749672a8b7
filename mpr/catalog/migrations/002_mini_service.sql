-- The super apps' mini service pages (seed 004): versions edited as drafts, pilot-tested,
-- released in grayscale and archived when a newer version is released. A super app is a
-- target app of target_app_policies; its mini service uses that policy's grayscale ladder.

-- Service operators and admins belong to a super app, so like partner_reviewer they are
-- scoped by target_app. 001 left the scope check unnamed: find it by its definition.
ALTER TABLE workspace_members DROP CONSTRAINT workspace_members_role_check;

DO $$
DECLARE
    scope_check text;
BEGIN
    -- STRICT: fail the migration unless exactly one constraint matches.
    SELECT conname INTO STRICT scope_check
    FROM pg_constraint
    WHERE conrelid = 'workspace_members'::regclass
        AND contype = 'c'
        AND pg_get_constraintdef(oid) LIKE '%partner_reviewer%';
    EXECUTE format('ALTER TABLE workspace_members DROP CONSTRAINT %I', scope_check);
END
$$;

ALTER TABLE workspace_members ADD CONSTRAINT workspace_members_role_check CHECK (role IN (
    'owner', 'admin', 'master', 'developer',
    'program_admin', 'platform_reviewer', 'partner_reviewer',
    'service_operator', 'service_admin'
));

ALTER TABLE workspace_members ADD CONSTRAINT workspace_members_target_app_scope CHECK (
    (role IN ('partner_reviewer', 'service_operator', 'service_admin')) = (target_app <> '')
);

-- Version numbers are allocated here, one row per super app, so that concurrent allocations
-- serialise on the row lock instead of racing on max(version_no).
CREATE TABLE mini_service_counters (
    super_app text PRIMARY KEY REFERENCES target_app_policies,
    last_version_no int NOT NULL CHECK (last_version_no >= 1)
);

CREATE TABLE mini_service_versions (
    super_app text NOT NULL REFERENCES target_app_policies,
    version_no int NOT NULL CHECK (version_no >= 1),
    -- The workflow's statuses; ARCHIVED is set by the catalog when a newer version is released.
    status text NOT NULL CHECK (status IN (
        'DRAFT', 'TESTING', 'RELEASING', 'RELEASED', 'ARCHIVED', 'DELETED'
    )),
    percent int NOT NULL DEFAULT 0 CHECK (percent BETWEEN 0 AND 100),
    content jsonb NOT NULL,
    testers text[] NOT NULL DEFAULT '{}',
    created_by text NOT NULL,
    duplicated_from int CHECK (duplicated_from < version_no),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    released_at timestamptz,
    archived_at timestamptz,
    PRIMARY KEY (super_app, version_no),
    -- Only a Released or Archived version can be duplicated, so the source exists.
    FOREIGN KEY (super_app, duplicated_from)
        REFERENCES mini_service_versions (super_app, version_no),
    CHECK ((status IN ('RELEASED', 'ARCHIVED')) = (released_at IS NOT NULL)),
    CHECK ((status = 'ARCHIVED') = (archived_at IS NOT NULL))
);

-- Unique indexes, not checks in code, so that concurrent workflows cannot race past them.
-- Users are served exactly one released page per super app.
CREATE UNIQUE INDEX mini_service_versions_one_released ON mini_service_versions (super_app)
WHERE status = 'RELEASED';

-- The in-flight hold: one version at a time is pilot-tested or rolled out per super app.
CREATE UNIQUE INDEX mini_service_versions_in_flight ON mini_service_versions (super_app)
WHERE status IN ('TESTING', 'RELEASING');

-- Append-only audit log. No foreign key to the versions: a refused event is recorded even
-- when the version row it names was never written. `blocked_by` (the version holding the
-- in-flight slot) and `archived_version` let a retried write return its first result.
CREATE TABLE mini_service_events (
    event_id text PRIMARY KEY,
    super_app text NOT NULL,
    version_no int NOT NULL,
    seq int NOT NULL,
    command text NOT NULL,
    actor text,
    accepted boolean NOT NULL,
    reason text,
    status_before text NOT NULL,
    status_after text NOT NULL,
    payload jsonb,
    at timestamptz NOT NULL,
    blocked_by int,
    archived_version int
);

CREATE INDEX mini_service_events_version_seq ON mini_service_events (super_app, version_no, seq);
