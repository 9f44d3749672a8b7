-- Issue 15: QR codes (docs/qr-codes.md). Each target app may have a deep-link template for
-- official codes and one for trial codes; NULL means no code of that kind can be made for it.
-- mpr.domain.qr checks a template's placeholders when it is set; the database keeps the
-- bounds and the one rule resolve_version relies on: a trial link names its release.
ALTER TABLE target_app_policies
    ADD COLUMN official_link_template text CHECK (char_length(official_link_template) <= 512),
    ADD COLUMN trial_link_template text CHECK (
        char_length(trial_link_template) <= 512
        AND trial_link_template ~ '[?&]mpr_trial=\{release_id\}(&|#|$)'
    );

-- Alipay China's documented launch link; the trial link adds the parameters Alipay's
-- container reads for a trial version and the project's own trial marker (mpr_trial).
UPDATE target_app_policies SET
    official_link_template =
        'alipays://platformapi/startapp?appId={mini_program_id}&page={page}&query={query}',
    trial_link_template =
        'alipays://platformapi/startapp?appId={mini_program_id}&page={page}&query={query}'
        '&nbsource=debug&nbsn=TRIAL&nbsv={version}&mpr_trial={release_id}'
WHERE target_app = 'alipaycn';

-- A mini program's trial members (体验成员): super app users who are served its trial codes'
-- versions, whichever release a code names (resolve_version with `trial`). Bounded per mini
-- program by mpr.catalog.admin.MAX_TRIAL_MEMBERS.
CREATE TABLE trial_members (
    mini_program_id text NOT NULL REFERENCES mini_programs,
    user_id text NOT NULL CHECK (char_length(user_id) BETWEEN 1 AND 128),
    added_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mini_program_id, user_id)
);
