-- ---------------------------------------------------------------------------
-- Reward epochs (SPEC 5). Owned by indexer/epochs/close.py through
-- indexer/epochs/store.py. An epoch row appears with its first reward (status
-- 'open') or at its close; a closed epoch (closed_at set) is final: the
-- triggers below refuse any change to it, its rewards or its allocations.
-- ---------------------------------------------------------------------------

-- Operators record each validator's reward per epoch (`indexer rewards add` or an INSERT).
CREATE TABLE IF NOT EXISTS epoch_rewards (
    epoch     bigint         NOT NULL CHECK (epoch >= 0),
    validator text           NOT NULL,
    asset     text           NOT NULL,
    amount    numeric(78, 0) NOT NULL CHECK (amount >= 0),  -- base units of `asset`
    PRIMARY KEY (epoch, validator, asset)
);

CREATE TABLE IF NOT EXISTS epochs (
    epoch      bigint PRIMARY KEY CHECK (epoch >= 0),
    start_time timestamptz NOT NULL,
    end_time   timestamptz NOT NULL,   -- exclusive
    root       text,                   -- 0x Merkle root over the stakers' leaves; NULL while open or without leaves
    closed_at  timestamptz,            -- NULL while open
    total      numeric(78, 0)          -- sum of the rewards split at close (= sum of the allocations)
);

-- One row per (validator, staker, asset) of a closed epoch; kind 'commission' has staker = the validator id
-- (kept apart from 'stake' so a validator staking in its own pool keeps both rows).
CREATE TABLE IF NOT EXISTS epoch_allocations (
    epoch     bigint         NOT NULL,
    validator text           NOT NULL,
    staker    text           NOT NULL,
    asset     text           NOT NULL,
    kind      text           NOT NULL DEFAULT 'stake' CHECK (kind IN ('stake', 'commission')),
    amount    numeric(78, 0) NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (epoch, validator, staker, asset, kind)
);

-- A closed epoch is immutable, whoever writes (CLI, SQL).
CREATE OR REPLACE FUNCTION epochs_refuse_closed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    IF TG_TABLE_NAME = 'epochs' THEN
        IF OLD.closed_at IS NOT NULL THEN
            RAISE EXCEPTION 'epoch % is closed and final', OLD.epoch;
        END IF;
        RETURN COALESCE(NEW, OLD);
    END IF;
    n := CASE WHEN TG_OP = 'DELETE' THEN OLD.epoch ELSE NEW.epoch END;
    IF EXISTS (SELECT 1 FROM epochs e WHERE e.epoch = n AND e.closed_at IS NOT NULL)
       OR (TG_OP = 'UPDATE' AND EXISTS (SELECT 1 FROM epochs e WHERE e.epoch = OLD.epoch AND e.closed_at IS NOT NULL)) THEN
        RAISE EXCEPTION 'epoch % is closed and final: its % cannot change', n, TG_TABLE_NAME;
    END IF;
    RETURN COALESCE(NEW, OLD);
END
$$;
DROP TRIGGER IF EXISTS epochs_final ON epochs;
CREATE TRIGGER epochs_final BEFORE UPDATE OR DELETE ON epochs
    FOR EACH ROW EXECUTE FUNCTION epochs_refuse_closed();
DROP TRIGGER IF EXISTS epoch_rewards_final ON epoch_rewards;
CREATE TRIGGER epoch_rewards_final BEFORE INSERT OR UPDATE OR DELETE ON epoch_rewards
    FOR EACH ROW EXECUTE FUNCTION epochs_refuse_closed();
DROP TRIGGER IF EXISTS epoch_allocations_final ON epoch_allocations;
CREATE TRIGGER epoch_allocations_final BEFORE INSERT OR UPDATE OR DELETE ON epoch_allocations
    FOR EACH ROW EXECUTE FUNCTION epochs_refuse_closed();

CREATE OR REPLACE VIEW v_epoch_allocations AS
SELECT epoch, validator, staker, asset, sum(amount) AS amount,
       bool_or(kind = 'commission') AS commission
  FROM epoch_allocations
 GROUP BY epoch, validator, staker, asset;

CREATE OR REPLACE VIEW v_epochs AS
SELECT e.epoch,
       CASE WHEN e.closed_at IS NULL THEN 'open' ELSE 'closed' END AS status,
       e.root, e.start_time, e.end_time,
       CASE WHEN e.closed_at IS NULL
            THEN (SELECT coalesce(sum(r.amount), 0) FROM epoch_rewards r WHERE r.epoch = e.epoch)
            ELSE e.total END AS total,
       e.closed_at
  FROM epochs e;

GRANT SELECT ON v_epoch_allocations, v_epochs TO indexer_reader;
