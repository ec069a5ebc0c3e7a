-- Bearer tokens of the read service (`tenderhub api`): each bound to one user and team, stored as the SHA-256 of the
-- token (the token itself is shown once, when `tenderhub api token issue` makes it). Revoked tokens keep their row.

CREATE TABLE api_tokens (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    token_hash  CHAR(64)        NOT NULL,
    user_id     BIGINT UNSIGNED NOT NULL,
    team_id     BIGINT UNSIGNED NOT NULL,
    name        VARCHAR(100)    NOT NULL,
    created_at  TIMESTAMP(3)    NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    revoked_at  TIMESTAMP(3)    NULL DEFAULT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_api_tokens_hash (token_hash),
    KEY ix_api_tokens_team (team_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
