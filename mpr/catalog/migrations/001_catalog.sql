-- The release catalog: what the release workflows have done, who may act, and which version
-- every channel serves. Workflows write it only through the catalog activities.

-- CHECK constraints cannot hold subqueries; these immutable helpers keep array rules declarative.
CREATE FUNCTION catalog_strictly_increasing(values_ int[]) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN NOT EXISTS (
    SELECT 1 FROM generate_subscripts(values_, 1) AS i
    WHERE i > 1 AND values_[i - 1] >= values_[i]
);

CREATE FUNCTION catalog_distinct(values_ text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN cardinality(values_) = (SELECT count(DISTINCT v) FROM unnest(values_) AS v);

CREATE TABLE target_app_policies (
    target_app text PRIMARY KEY CHECK (target_app ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    display_name text NOT NULL DEFAULT '',
    required_reviewers text[] NOT NULL CHECK (
        cardinality(required_reviewers) >= 1
        AND required_reviewers <@ ARRAY['platform', 'partner_app']
        AND catalog_distinct(required_reviewers)
    ),
    first_release_full_only boolean NOT NULL DEFAULT false,
    whitelist_allowed boolean NOT NULL DEFAULT true,
    grayscale_ladder int[] NOT NULL DEFAULT '{1,2,5,10,20,50,100}' CHECK (
        cardinality(grayscale_ladder) >= 1
        AND array_ndims(grayscale_ladder) = 1
        AND 1 <= ALL (grayscale_ladder)
        AND grayscale_ladder[cardinality(grayscale_ladder)] = 100
        AND catalog_strictly_increasing(grayscale_ladder)
    ),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- program_admin is scoped to one mini program and partner_reviewer to one target app; the
-- other roles carry neither scope, so '' (not NULL) keeps the primary key total.
CREATE TABLE workspace_members (
    workspace_id text NOT NULL,
    user_id text NOT NULL,
    role text NOT NULL CHECK (role IN (
        'owner', 'admin', 'master', 'developer',
        'program_admin', 'platform_reviewer', 'partner_reviewer'
    )),
    mini_program_id text NOT NULL DEFAULT '',
    target_app text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, user_id, role, mini_program_id, target_app),
    CHECK ((role = 'program_admin') = (mini_program_id <> '')),
    CHECK ((role = 'partner_reviewer') = (target_app <> ''))
);

-- Role look-ups go by actor first; reviewer roles are not tied to the release's workspace.
CREATE INDEX workspace_members_user ON workspace_members (user_id, role);

CREATE TABLE mini_programs (
    mini_program_id text PRIMARY KEY,
    workspace_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE packages (
    sha256 text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
    uncompressed_bytes bigint NOT NULL CHECK (uncompressed_bytes >= 0),
    file_count int NOT NULL CHECK (file_count >= 0),
    artifact_path text NOT NULL,
    manifest jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE releases (
    release_id text PRIMARY KEY,
    mini_program_id text NOT NULL REFERENCES mini_programs,
    version text NOT NULL,
    target_app text NOT NULL REFERENCES target_app_policies,
    environment text NOT NULL
        CHECK (environment IN ('production', 'development', 'test', 'sandbox')),
    workspace_id text NOT NULL,
    requested_by text NOT NULL,
    -- The workflow's stages, plus ARCHIVED: set by the catalog when a newer version replaces
    -- this one as its channel's stable version.
    stage text NOT NULL CHECK (stage IN (
        'BUILDING', 'BUILD_FAILED', 'COMPATIBILITY_TESTING', 'READY_TO_APPLY', 'UNDER_REVIEW',
        'REJECTED', 'RELEASE_PREPARATION', 'WHITELIST_TESTING', 'GRAYSCALE', 'RELEASED',
        'CANCELED', 'ARCHIVED'
    )),
    percent int NOT NULL DEFAULT 0 CHECK (percent BETWEEN 0 AND 100),
    package_sha256 text REFERENCES packages,
    first_release boolean NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    archived_at timestamptz,
    -- Only a RELEASED row may be a channel's stable release (see channels below).
    stable_eligible boolean GENERATED ALWAYS AS (stage = 'RELEASED') STORED,
    UNIQUE (mini_program_id, version, target_app, environment),
    UNIQUE (release_id, stable_eligible),
    CHECK ((stage = 'ARCHIVED') = (archived_at IS NOT NULL))
);

-- The channel hold: one release per (program, target app, environment) between UNDER_REVIEW
-- and GRAYSCALE. A unique index (not a check in code) so concurrent workflows cannot race.
CREATE UNIQUE INDEX releases_channel_hold ON releases (mini_program_id, target_app, environment)
WHERE stage IN ('UNDER_REVIEW', 'RELEASE_PREPARATION', 'WHITELIST_TESTING', 'GRAYSCALE');

CREATE INDEX releases_channel ON releases (mini_program_id, target_app, environment);

CREATE TABLE compatibility_reports (
    report_id text PRIMARY KEY,
    release_id text NOT NULL REFERENCES releases,
    package_sha256 text NOT NULL REFERENCES packages,
    cells int NOT NULL,
    passed int NOT NULL,
    warned int NOT NULL,
    failed int NOT NULL,
    results jsonb NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE INDEX compatibility_reports_release ON compatibility_reports (release_id);

CREATE TABLE review_requests (
    release_id text NOT NULL REFERENCES releases,
    round int NOT NULL CHECK (round >= 0),
    organisation text NOT NULL CHECK (organisation IN ('platform', 'partner_app')),
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    actor text,
    comment text NOT NULL DEFAULT '',
    requested_at timestamptz NOT NULL,
    decided_at timestamptz,
    PRIMARY KEY (release_id, round, organisation),
    CHECK ((status = 'pending') = (decided_at IS NULL)),
    CHECK ((status = 'pending') = (actor IS NULL))
);

-- What each channel serves. Clients resolve versions from this row alone.
CREATE TABLE channels (
    mini_program_id text NOT NULL REFERENCES mini_programs,
    target_app text NOT NULL REFERENCES target_app_policies,
    environment text NOT NULL
        CHECK (environment IN ('production', 'development', 'test', 'sandbox')),
    stable_version text,
    stable_release_id text,
    -- Constant true: paired with stable_release_id it must match releases.stable_eligible, so
    -- the stable release is always RELEASED; archiving it while stable fails the key.
    stable_is_released boolean NOT NULL DEFAULT true CHECK (stable_is_released),
    candidate_version text,
    candidate_release_id text REFERENCES releases,
    percent int NOT NULL DEFAULT 0 CHECK (percent BETWEEN 0 AND 100),
    whitelist text[] NOT NULL DEFAULT '{}',
    revision bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (mini_program_id, target_app, environment),
    FOREIGN KEY (stable_release_id, stable_is_released)
        REFERENCES releases (release_id, stable_eligible),
    CHECK ((stable_version IS NULL) = (stable_release_id IS NULL)),
    CHECK ((candidate_version IS NULL) = (candidate_release_id IS NULL)),
    CHECK (candidate_version IS NOT NULL OR (percent = 0 AND cardinality(whitelist) = 0))
);

-- Append-only audit log. No foreign key to releases: a refused or blocked event is recorded
-- even when the release row it names was never written.
CREATE TABLE release_events (
    event_id text PRIMARY KEY,
    release_id text NOT NULL,
    seq int NOT NULL,
    command text NOT NULL,
    actor text,
    accepted boolean NOT NULL,
    reason text,
    stage_before text NOT NULL,
    stage_after text NOT NULL,
    payload jsonb,
    at timestamptz NOT NULL,
    blocked_by text
);

CREATE INDEX release_events_release_seq ON release_events (release_id, seq);

INSERT INTO target_app_policies (
    target_app, display_name, required_reviewers, first_release_full_only, whitelist_allowed,
    grayscale_ladder
) VALUES
    -- Seeds 000/001: Alipay China needs both reviews and has no whitelist testing.
    ('alipaycn', 'Alipay China', '{platform,partner_app}', false, false, '{1,2,5,10,20,50,100}'),
    -- Seed 002: GoPay reviews on its own; a first release must go out to everyone at once.
    ('gopay', 'GoPay', '{partner_app}', true, true, '{1,2,5,10,20,50,100}'),
    ('dana', 'DANA', '{platform,partner_app}', true, true, '{1,5,10,25,50,100}'),
    ('gcash', 'GCash', '{partner_app}', false, true, '{1,2,5,10,20,50,100}');
