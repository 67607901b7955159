-- The owners of accepted jobs of tenants other than `default` (issue 22's scoped tokens), kept as
-- long as the accepted marks; the SQLite backend's `yizhan_owners` (state/src/tenants.rs).
CREATE TABLE yizhan_owners (
    namespace   TEXT   NOT NULL,
    job_id      TEXT   NOT NULL,
    tenant      TEXT   NOT NULL,
    accepted_at BIGINT NOT NULL,
    PRIMARY KEY (namespace, job_id)
);
CREATE INDEX yizhan_owners_at ON yizhan_owners (namespace, accepted_at);
