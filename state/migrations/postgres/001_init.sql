-- The PostgreSQL state store's first schema: the tables of the SQLite backend (state/src/sqlite.rs),
-- with the same names and meanings, every row keyed by the deployment's namespace (the queue
-- prefix). Applied once, in a transaction, under an advisory lock (state/src/postgres/migrate.rs).
-- Ids, keys and JSON are TEXT (as written by the other backends); times are BIGINT milliseconds
-- since the Unix epoch, passed in by the caller.

CREATE TABLE yizhan_keys (
    namespace       TEXT    NOT NULL,
    key             TEXT    NOT NULL,
    job_id          TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    attempt         BIGINT  NOT NULL,
    owner           TEXT,
    lease_until     BIGINT,
    retry_published BOOLEAN NOT NULL DEFAULT FALSE,
    next_attempt_at BIGINT,
    progress        TEXT,
    result          TEXT,
    error           TEXT,
    error_kind      TEXT,
    updated_at      BIGINT  NOT NULL,
    campaign        TEXT,
    delivery        TEXT,
    notify          TEXT,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX yizhan_keys_updated ON yizhan_keys (namespace, updated_at);

CREATE TABLE yizhan_jobs (
    namespace  TEXT   NOT NULL,
    job_id     TEXT   NOT NULL,
    key        TEXT   NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (namespace, job_id)
);
CREATE INDEX yizhan_jobs_updated ON yizhan_jobs (namespace, updated_at);

CREATE TABLE yizhan_accepted (
    namespace   TEXT   NOT NULL,
    job_id      TEXT   NOT NULL,
    accepted_at BIGINT NOT NULL,
    PRIMARY KEY (namespace, job_id)
);
CREATE INDEX yizhan_accepted_at ON yizhan_accepted (namespace, accepted_at);

CREATE TABLE yizhan_tombstones (
    namespace TEXT   NOT NULL,
    job_id    TEXT   NOT NULL,
    at        BIGINT NOT NULL,
    PRIMARY KEY (namespace, job_id)
);
CREATE INDEX yizhan_tombstones_at ON yizhan_tombstones (namespace, at);

CREATE TABLE yizhan_counted (
    namespace TEXT   NOT NULL,
    job_id    TEXT   NOT NULL,
    at        BIGINT NOT NULL,
    PRIMARY KEY (namespace, job_id)
);
CREATE INDEX yizhan_counted_at ON yizhan_counted (namespace, at);

CREATE TABLE yizhan_campaigns (
    namespace  TEXT   NOT NULL,
    id         TEXT   NOT NULL,
    tenant     TEXT   NOT NULL,
    key        TEXT   NOT NULL,
    head       TEXT   NOT NULL,
    send_at    BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    total      BIGINT NOT NULL DEFAULT 0,
    control    TEXT   NOT NULL DEFAULT 'running',
    PRIMARY KEY (namespace, id),
    UNIQUE (namespace, tenant, key)
);

-- Narrow, so that a count change rewrites a few numbers and not the campaign's head.
CREATE TABLE yizhan_campaign_counts (
    namespace     TEXT   NOT NULL,
    id            TEXT   NOT NULL,
    updated_at    BIGINT NOT NULL,
    n_scheduled   BIGINT NOT NULL DEFAULT 0,
    n_deferred    BIGINT NOT NULL DEFAULT 0,
    n_running     BIGINT NOT NULL DEFAULT 0,
    n_retrying    BIGINT NOT NULL DEFAULT 0,
    n_succeeded   BIGINT NOT NULL DEFAULT 0,
    n_dead        BIGINT NOT NULL DEFAULT 0,
    n_cancelled   BIGINT NOT NULL DEFAULT 0,
    n_capped      BIGINT NOT NULL DEFAULT 0,
    n_duplicate   BIGINT NOT NULL DEFAULT 0,
    n_delivered   BIGINT NOT NULL DEFAULT 0,
    n_undelivered BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, id)
);

CREATE TABLE yizhan_sids (
    namespace TEXT   NOT NULL,
    sid       TEXT   NOT NULL,
    key       TEXT   NOT NULL,
    recipient TEXT   NOT NULL,
    pull      TEXT,
    due       BIGINT,
    at        BIGINT NOT NULL,
    PRIMARY KEY (namespace, sid)
);
CREATE INDEX yizhan_sids_at ON yizhan_sids (namespace, at);
CREATE INDEX yizhan_sids_pull ON yizhan_sids (namespace, pull, due) WHERE pull IS NOT NULL;

CREATE TABLE yizhan_early_receipts (
    namespace TEXT   NOT NULL,
    sid       TEXT   NOT NULL,
    state     TEXT   NOT NULL,
    code      TEXT,
    at        BIGINT NOT NULL,
    stored_at BIGINT NOT NULL,
    PRIMARY KEY (namespace, sid)
);
CREATE INDEX yizhan_early_receipts_at ON yizhan_early_receipts (namespace, stored_at);

CREATE TABLE yizhan_leases (
    namespace  TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    owner      TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (namespace, name)
);

CREATE TABLE yizhan_tenants (
    namespace TEXT NOT NULL,
    tenant    TEXT NOT NULL,
    PRIMARY KEY (namespace, tenant)
);

-- The parking lot (state/src/parking.rs): a held entry has due = the largest BIGINT.
CREATE TABLE yizhan_parked (
    namespace   TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    due         BIGINT  NOT NULL,
    token       BIGINT  NOT NULL,
    routing_key TEXT    NOT NULL,
    body        BYTEA   NOT NULL,
    headers     TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    campaign    TEXT,
    held        BOOLEAN NOT NULL DEFAULT FALSE,
    parked_due  BIGINT,
    PRIMARY KEY (namespace, id)
);
CREATE INDEX yizhan_parked_due ON yizhan_parked (namespace, due);
CREATE INDEX yizhan_parked_campaign ON yizhan_parked (namespace, campaign, held, parked_due)
    WHERE campaign IS NOT NULL;
CREATE TABLE yizhan_parked_held (
    namespace TEXT NOT NULL,
    campaign  TEXT NOT NULL,
    PRIMARY KEY (namespace, campaign)
);

-- Directory sync (state/src/directory.rs).
CREATE TABLE yizhan_directory_snapshots (
    namespace TEXT NOT NULL,
    config    TEXT NOT NULL,
    snapshot  TEXT NOT NULL,
    PRIMARY KEY (namespace, config)
);
CREATE TABLE yizhan_directory_applied (
    namespace TEXT NOT NULL,
    config    TEXT NOT NULL,
    op        TEXT NOT NULL,
    PRIMARY KEY (namespace, config, op)
);
CREATE TABLE yizhan_directory_leases (
    namespace  TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    owner      TEXT   NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (namespace, name)
);

-- Campaign counters move with the records in the statement that changes them, so that no code
-- path can forget them; a record without a campaign only evaluates the WHEN.
CREATE FUNCTION yizhan_count_campaign() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_state TEXT;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        old_state := OLD.state;
    END IF;
    UPDATE yizhan_campaign_counts SET
        n_scheduled = n_scheduled + (NEW.state = 'scheduled')::int - (old_state IS NOT DISTINCT FROM 'scheduled')::int,
        n_deferred  = n_deferred  + (NEW.state = 'deferred')::int  - (old_state IS NOT DISTINCT FROM 'deferred')::int,
        n_running   = n_running   + (NEW.state = 'running')::int   - (old_state IS NOT DISTINCT FROM 'running')::int,
        n_retrying  = n_retrying  + (NEW.state = 'retrying')::int  - (old_state IS NOT DISTINCT FROM 'retrying')::int,
        n_succeeded = n_succeeded + (NEW.state = 'succeeded')::int - (old_state IS NOT DISTINCT FROM 'succeeded')::int,
        n_dead      = n_dead      + (NEW.state = 'dead')::int      - (old_state IS NOT DISTINCT FROM 'dead')::int,
        n_cancelled = n_cancelled + (NEW.state = 'cancelled')::int - (old_state IS NOT DISTINCT FROM 'cancelled')::int,
        n_capped    = n_capped    + (NEW.state = 'capped')::int    - (old_state IS NOT DISTINCT FROM 'capped')::int,
        updated_at  = GREATEST(updated_at, NEW.updated_at)
    WHERE namespace = NEW.namespace AND id = NEW.campaign;
    RETURN NULL;
END
$$;

CREATE TRIGGER yizhan_keys_campaign_insert AFTER INSERT ON yizhan_keys
    FOR EACH ROW WHEN (NEW.campaign IS NOT NULL)
    EXECUTE FUNCTION yizhan_count_campaign();
CREATE TRIGGER yizhan_keys_campaign_update AFTER UPDATE OF state ON yizhan_keys
    FOR EACH ROW WHEN (NEW.campaign IS NOT NULL AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION yizhan_count_campaign();
