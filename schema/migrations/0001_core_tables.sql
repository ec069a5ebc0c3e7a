-- Core business tables and the transactional outbox. Portable between MariaDB 10.11 and MySQL 8.4.
-- Every statement ends with ";" at the end of a line (the migration runner splits on that).

CREATE TABLE teams (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    name        VARCHAR(200)    NOT NULL,
    created_at  TIMESTAMP(3)    NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at  TIMESTAMP(3)    NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uq_teams_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE users (
    id            BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    team_id       BIGINT UNSIGNED NOT NULL,
    email         VARCHAR(254)    NOT NULL,
    display_name  VARCHAR(200)    NOT NULL,
    role          VARCHAR(32)     NOT NULL DEFAULT 'member',
    created_at    TIMESTAMP(3)    NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uq_users_email (email),
    KEY ix_users_team (team_id),
    CONSTRAINT fk_users_team FOREIGN KEY (team_id) REFERENCES teams (id),
    CONSTRAINT ck_users_role CHECK (role IN ('owner', 'admin', 'member'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- One profile per team. sectors and provinces are JSON arrays of strings.
CREATE TABLE company_profiles (
    id                BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    team_id           BIGINT UNSIGNED NOT NULL,
    company_name      VARCHAR(300)    NOT NULL,
    sectors           JSON            NOT NULL,
    provinces         JSON            NOT NULL,
    experience_years  SMALLINT UNSIGNED NULL,
    bbbee_level       TINYINT UNSIGNED  NULL,
    updated_at        TIMESTAMP(3)    NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uq_company_profiles_team (team_id),
    CONSTRAINT fk_company_profiles_team FOREIGN KEY (team_id) REFERENCES teams (id),
    -- B-BBEE levels 1 (best) to 8; NULL = non-compliant or unknown.
    CONSTRAINT ck_company_profiles_bbbee CHECK (bbbee_level IS NULL OR bbbee_level BETWEEN 1 AND 8)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- A company holds one CIDB grade per class of works (CE, GB, EP, ME, ...), 1-9, optionally "potentially
-- emerging" (PE): a PE contractor may bid one grade above its own.
CREATE TABLE company_cidb_gradings (
    company_id            BIGINT UNSIGNED NOT NULL,
    class_of_works        VARCHAR(4)      NOT NULL,
    grade                 TINYINT UNSIGNED NOT NULL,
    potentially_emerging  BOOLEAN         NOT NULL DEFAULT FALSE,
    PRIMARY KEY (company_id, class_of_works),
    CONSTRAINT fk_cidb_company FOREIGN KEY (company_id) REFERENCES company_profiles (id) ON DELETE CASCADE,
    CONSTRAINT ck_cidb_grade CHECK (grade BETWEEN 1 AND 9),
    CONSTRAINT ck_cidb_class CHECK (class_of_works IN ('CE', 'GB', 'EB', 'EP', 'ME', 'SO', 'SB', 'SC', 'SD',
        'SE', 'SF', 'SG', 'SH', 'SI', 'SJ', 'SK', 'SL', 'SM', 'SN', 'SQ'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Budgets are nullable: real eTenders releases carry no value; UK award values do.
CREATE TABLE tenders (
    id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    ocid           VARCHAR(128)    NOT NULL,
    tender_number  VARCHAR(255)    NULL,
    title          VARCHAR(1000)   NOT NULL,
    description    TEXT            NULL,
    buyer          VARCHAR(500)    NULL,
    budget         DECIMAL(18, 2)  NULL,
    currency       CHAR(3)         NULL,
    status         VARCHAR(32)     NOT NULL DEFAULT 'active',
    published_at   DATETIME        NULL,
    closing_at     DATETIME        NULL,
    province       VARCHAR(64)     NULL,
    category       VARCHAR(255)    NULL,
    raw_ocds       JSON            NULL,
    created_at     TIMESTAMP(3)    NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at     TIMESTAMP(3)    NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY uq_tenders_ocid (ocid),
    KEY ix_tenders_status_closing (status, closing_at),
    KEY ix_tenders_buyer (buyer(191)),
    -- OCDS tender status codes.
    CONSTRAINT ck_tenders_status CHECK (status IN ('planning', 'planned', 'active', 'cancelled',
        'unsuccessful', 'complete', 'withdrawn')),
    CONSTRAINT ck_tenders_budget CHECK ((budget IS NULL AND currency IS NULL)
        OR (budget IS NOT NULL AND budget >= 0 AND currency IS NOT NULL))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- The transactional outbox: the application inserts one row per event in the same transaction as the business
-- change; the CDC relay publishes it. Seed columns plus aggregate_type/aggregate_id (routing and Kafka key),
-- schema_version (contract version) and millisecond created_at (lag measurement).
CREATE TABLE integration_outbox (
    id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    event_type      VARCHAR(64)     NOT NULL,
    aggregate_type  VARCHAR(32)     NOT NULL,
    aggregate_id    VARCHAR(64)     NOT NULL,
    schema_version  SMALLINT UNSIGNED NOT NULL DEFAULT 1,
    payload         JSON            NOT NULL,
    published       BOOLEAN         NOT NULL DEFAULT FALSE,
    created_at      TIMESTAMP(3)    NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    published_at    TIMESTAMP(3)    NULL DEFAULT NULL,
    PRIMARY KEY (id),
    KEY idx_outbox_published_created (published, created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
