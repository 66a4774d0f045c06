-- The readable description of the indexer's current tables and views.
-- Databases are built and upgraded by the numbered migrations in indexer/store/migrations/
-- (`indexer migrate`, and `run` at start); a test holds that migrating an empty database
-- gives exactly the schema this file gives. A change here comes with a new migration.
-- Amounts are NUMERIC(78,0): a uint256 fits exactly. Addresses are stored in each
-- chain's canonical form (EVM: lower-case 0x hex).

-- Owned by the chain watchers (indexer/store/events.py): one row per on-chain log
-- (or accepted feed record), unique on its natural key, written only through
-- COPY into a staging table + INSERT ... ON CONFLICT DO NOTHING. A reorg deletes
-- the rows above the common ancestor in the same transaction as the cursor.
CREATE TABLE IF NOT EXISTS events (
    chain            text        NOT NULL,
    chain_id         bigint      NOT NULL,
    contract         text        NOT NULL,
    contract_kind    text        NOT NULL CHECK (contract_kind IN ('native', 'erc20', 'erc721', 'social')),
    contract_version smallint    NOT NULL,
    block_number     bigint      NOT NULL,
    block_hash       text        NOT NULL,
    block_time       timestamptz NOT NULL,
    tx_hash          text        NOT NULL,
    log_index        integer     NOT NULL,
    event_type       text        NOT NULL CHECK (event_type IN (
                         'stake', 'unstake', 'unstake_request', 'unstake_batch', 'withdrawal',
                         'transfer', 'social_delegate', 'social_undelegate')),
    staker           text,           -- staker / unstaker / withdrawer; for transfer: the sender
    counterparty     text,           -- for transfer: the receiver
    pool             text,           -- validator id; NULL while a string pool is unresolved
    pool_hash        text,           -- keccak256(pool) of a `string indexed` pool
    amount           numeric(78, 0),
    token_id         numeric(78, 0), -- ERC-721: the token (amount is then 1)
    unlock_time      timestamptz,
    asset            text        NOT NULL,
    PRIMARY KEY (chain, tx_hash, log_index)
);
CREATE INDEX IF NOT EXISTS events_chain_block ON events (chain, block_number);
CREATE INDEX IF NOT EXISTS events_unresolved_pool ON events (pool_hash) WHERE pool IS NULL AND pool_hash IS NOT NULL;

-- Owned by the chain watchers: how far each chain is indexed. Written in the
-- same transaction as the events it covers, so a crash never splits them.
CREATE TABLE IF NOT EXISTS chain_cursors (
    chain           text PRIMARY KEY,
    chain_id        bigint      NOT NULL,
    block_number    bigint      NOT NULL,  -- last fully indexed block
    block_hash      text        NOT NULL,
    block_time      timestamptz NOT NULL,
    head_block      bigint      NOT NULL,  -- node's head when last polled
    confirmed_block bigint      NOT NULL,  -- head minus `confirmations`
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Owned by the chain watchers and feed sources: how each source is doing right now.
CREATE TABLE IF NOT EXISTS chain_health (
    chain      text PRIMARY KEY,
    state      text NOT NULL CHECK (state IN ('ok', 'retrying', 'failed')),
    error      text,                  -- the last error, secrets redacted
    owner      text,                  -- host:pid of the process indexing it (advisory lock holder)
    since      timestamptz NOT NULL DEFAULT now(),   -- when `state` began
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Owned by the chain watchers: the contracts each chain's cursor covers. A contract
-- added to the config later, with an earlier start block, rewinds the cursor so
-- its history is indexed (events already stored are kept and not duplicated).
CREATE TABLE IF NOT EXISTS chain_contracts (
    chain       text   NOT NULL,
    address     text   NOT NULL,
    start_block bigint NOT NULL,
    PRIMARY KEY (chain, address)
);

-- Owned by the chain watchers: hashes of recently indexed blocks, to find the
-- common ancestor when a reorg is detected. Trimmed to a window per chain.
CREATE TABLE IF NOT EXISTS recent_blocks (
    chain        text   NOT NULL,
    block_number bigint NOT NULL,
    block_hash   text   NOT NULL,
    parent_hash  text,
    block_time   bigint,           -- unix seconds
    PRIMARY KEY (chain, block_number)
);

-- Owned by the chain watchers: every reorg repaired, for operators and for the
-- projector (a reorg below its watermark means reprojecting from `ancestor_block`).
-- A social feed writes one too (empty hashes, no events removed) when a record arrives
-- dated before what the projector may have folded: its history changed after `ancestor_block`.
CREATE TABLE IF NOT EXISTS reorgs (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chain          text        NOT NULL,
    detected_at    timestamptz NOT NULL DEFAULT now(),
    ancestor_block bigint      NOT NULL,  -- last block both branches share
    ancestor_hash  text        NOT NULL,
    orphaned_block bigint      NOT NULL,  -- the indexed tip that was orphaned
    orphaned_hash  text        NOT NULL,
    depth          integer     NOT NULL,
    events_removed integer     NOT NULL
);

-- Owned by the chain watchers: names of `string indexed` pools by keccak256,
-- learnt from calldata, traces or the configured validator ids.
CREATE TABLE IF NOT EXISTS pool_names (
    pool_hash text PRIMARY KEY,
    name      text NOT NULL
);

-- Dashboards: one row per chain.
CREATE OR REPLACE VIEW v_indexer_status AS
SELECT coalesce(c.chain, h.chain)                  AS chain,
       c.head_block,
       c.block_number                              AS indexed_block,
       c.confirmed_block,
       GREATEST(c.head_block - c.block_number, 0)  AS lag_blocks,
       c.updated_at,
       c.block_time                                AS indexed_block_time,
       (SELECT count(*) FROM events e
         WHERE e.chain = c.chain AND e.pool IS NULL AND e.pool_hash IS NOT NULL) AS unresolved_pools,
       coalesce(h.state, 'ok')                     AS state,
       h.error,
       h.since                                     AS state_since,
       h.owner
  FROM chain_cursors c
  FULL JOIN chain_health h ON h.chain = c.chain;

-- The projector's view of each chain: up to which block and block time it is confirmed.
CREATE OR REPLACE VIEW v_chain_frontier AS
SELECT c.chain, c.confirmed_block,
       CASE WHEN c.block_number <= c.confirmed_block THEN extract(epoch FROM c.block_time)::bigint
            ELSE (SELECT r.block_time FROM recent_blocks r
                   WHERE r.chain = c.chain AND r.block_number <= c.confirmed_block
                   ORDER BY r.block_number DESC LIMIT 1)
       END AS confirmed_time
  FROM chain_cursors c;

-- Dashboards: events above their chain's confirmed height (they may still be orphaned).
CREATE OR REPLACE VIEW v_pending_events AS
SELECT e.*
  FROM events e
  JOIN chain_cursors c ON c.chain = e.chain
 WHERE e.block_number > c.confirmed_block;

-- ---------------------------------------------------------------------------
-- Projections. Owned by the projector (indexer/projector/runner.py through
-- indexer/store/projections.py): the fold of every confirmed event up to the
-- projector's frontier, rewritten only where a fold changed it, in the same
-- transaction as projector_cursor. `indexer reproject` rebuilds them all.
-- ---------------------------------------------------------------------------

-- Written by the projector from the config at start: how to weigh each asset.
CREATE TABLE IF NOT EXISTS assets (
    asset    text PRIMARY KEY,
    decimals integer NOT NULL,
    weight   numeric NOT NULL   -- points per whole token
);

CREATE TABLE IF NOT EXISTS validator_amounts (
    validator text NOT NULL,
    asset     text NOT NULL,
    amount    numeric(78, 0) NOT NULL,
    PRIMARY KEY (validator, asset)
);

-- What each contract's `stakingPools(pool)` must return.
CREATE TABLE IF NOT EXISTS pool_amounts (
    chain    text NOT NULL,
    contract text NOT NULL,
    pool     text NOT NULL,
    amount   numeric(78, 0) NOT NULL,
    PRIMARY KEY (chain, contract, pool)
);

-- Staker positions, a row per (validator, asset, bucket) holding the bucket's stakers and amounts as
-- arrays: a pro rata (SPEC 4) changes nearly every position of a pool, and rewriting a pool's bucket
-- rows costs a fraction of rewriting a row per position. A staker's bucket is the first `bits` bits
-- of the MD5 of its text, `bits` growing with the pool (about 8 to 16 stakers a row). The view
-- `positions` lists them a row each.
CREATE OR REPLACE FUNCTION position_bits(size bigint) RETURNS smallint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT CASE WHEN size <= 16 THEN 0
                      ELSE least(16, length(ltrim(((size - 1) / 16)::bit(64)::text, '0'))) END::smallint $$;
COMMENT ON FUNCTION position_bits(bigint) IS 'How many bits of the stakers'' hash split a pool of `size` positions into bucket rows (0-16).';

CREATE OR REPLACE FUNCTION position_bucket(staker text, bits integer) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT ('x' || left(md5(staker), 4))::bit(16)::integer >> (16 - bits) $$;
COMMENT ON FUNCTION position_bucket(text, integer) IS 'The bucket row of a staker''s position in a pool split by `bits` bits: the first `bits` bits of the MD5 of its UTF-8 text.';

CREATE TABLE IF NOT EXISTS position_buckets (
    validator text NOT NULL,
    asset     text NOT NULL,
    bucket    integer NOT NULL,            -- position_bucket(staker, bits) of every staker in the row
    bits      smallint NOT NULL,           -- position_bits(the pool's positions), the same in all its rows
    stakers   text[] NOT NULL,             -- in code point order
    amounts   numeric(78, 0)[] NOT NULL,   -- each staker's amount (never zero), in the same order
    PRIMARY KEY (validator, asset, bucket)
);
CREATE INDEX IF NOT EXISTS position_buckets_bucket ON position_buckets (bucket);

CREATE OR REPLACE VIEW positions AS
SELECT p.staker, b.validator, b.asset, p.amount
  FROM position_buckets b
 CROSS JOIN LATERAL unnest(b.stakers, b.amounts) AS p(staker, amount);

CREATE TABLE IF NOT EXISTS social_delegations (
    feed      text NOT NULL,
    staker    text NOT NULL,
    validator text NOT NULL,
    points    numeric(78, 0) NOT NULL,
    PRIMARY KEY (feed, staker, validator)
);

CREATE TABLE IF NOT EXISTS lst_balances (
    chain    text NOT NULL,
    contract text NOT NULL,
    holder   text NOT NULL,
    balance  numeric(78, 0) NOT NULL,
    PRIMARY KEY (chain, contract, holder)
);

-- ERC-721 liquid tokens: who holds each, and the pool it is staked in.
CREATE TABLE IF NOT EXISTS lst_tokens (
    chain    text NOT NULL,
    contract text NOT NULL,
    token_id numeric(78, 0) NOT NULL,
    owner    text,
    pool     text,
    PRIMARY KEY (chain, contract, token_id)
);

CREATE TABLE IF NOT EXISTS pending_withdrawals (
    chain       text NOT NULL,
    contract    text NOT NULL,
    staker      text NOT NULL,
    position    integer NOT NULL,   -- order of the requests of one staker, oldest first
    amount      numeric(78, 0) NOT NULL,
    unlock_time timestamptz NOT NULL,
    token_id    numeric(78, 0),     -- ERC-721 v2: the NFT requested (amount 1); NULL for fungible requests
    PRIMARY KEY (chain, contract, staker, position)
);
ALTER TABLE pending_withdrawals ADD COLUMN IF NOT EXISTS token_id numeric(78, 0);

-- Room on every page for a row's next version: the projector rewrites amounts in place, and an
-- update that fits on its page (HOT) leaves the indexes alone. An over-unstake rewrites every
-- bucket of a pool, which sit together: half of each page is kept free for them.
ALTER TABLE validator_amounts SET (fillfactor = 50);
ALTER TABLE pool_amounts SET (fillfactor = 50);
ALTER TABLE position_buckets SET (fillfactor = 50);
ALTER TABLE lst_balances SET (fillfactor = 70);

-- The projector's cursor: per chain, the last event folded.
CREATE TABLE IF NOT EXISTS projector_cursor (
    chain        text PRIMARY KEY,
    block_time   bigint NOT NULL,
    block_number bigint NOT NULL,
    log_index    integer NOT NULL,
    tx_hash      text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The projector's singleton row: the newest reorg it has accounted for.
CREATE TABLE IF NOT EXISTS projector_state (
    id             boolean PRIMARY KEY DEFAULT true CHECK (id),
    reorgs_seen    bigint NOT NULL DEFAULT 0,
    frontier_time  bigint,           -- events up to this block time are folded
    coverage       text[],           -- the chains and contracts ("chain/address") the projections cover
    updated_at     timestamptz NOT NULL DEFAULT now(),
    reproject_requested_at timestamptz  -- `indexer reproject` asked the running projector to rebuild
);

CREATE OR REPLACE VIEW v_validator_points AS
SELECT v.validator, v.asset, v.amount,
       v.amount / (10::numeric ^ a.decimals) * a.weight AS points
  FROM validator_amounts v
  LEFT JOIN assets a USING (asset);

CREATE OR REPLACE VIEW v_validator_leaderboard AS
SELECT validator, sum(points) AS points, rank() OVER (ORDER BY sum(points) DESC NULLS LAST) AS rank
  FROM v_validator_points
 GROUP BY validator;

CREATE OR REPLACE VIEW v_staker_positions AS
SELECT p.staker, b.validator, b.asset, p.amount,
       p.amount / NULLIF(v.amount, 0) AS share, b.bits, b.bucket
  FROM position_buckets b
 CROSS JOIN LATERAL unnest(b.stakers, b.amounts) AS p(staker, amount)
  JOIN validator_amounts v USING (validator, asset);
COMMENT ON VIEW v_staker_positions IS 'Each staker''s position per validator and asset (SPEC 8). One staker''s rows without reading every position: staker_positions(staker).';
CREATE OR REPLACE FUNCTION staker_positions(staker text)
    RETURNS TABLE (validator text, asset text, amount numeric, share numeric)
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT p.validator, p.asset, p.amount, p.share FROM v_staker_positions p
           WHERE p.staker = $1 AND p.bucket = position_bucket($1, p.bits)
             AND p.bucket = ANY (ARRAY(SELECT position_bucket($1, b) FROM generate_series(0, 16) AS b)) $$;
COMMENT ON FUNCTION staker_positions(text) IS 'One staker''s rows of v_staker_positions, read through the bucket index (its candidate bucket of every bits) instead of every position.';

CREATE OR REPLACE VIEW v_lst_balances AS
SELECT chain, contract, holder, balance FROM lst_balances;

CREATE OR REPLACE VIEW v_pending_withdrawals AS
SELECT chain, contract, staker, amount, unlock_time, token_id FROM pending_withdrawals;

-- Dashboards read through this role: the views and nothing else.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'indexer_reader') THEN
        CREATE ROLE indexer_reader NOLOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO indexer_reader;
GRANT SELECT ON v_indexer_status, v_pending_events, v_validator_points, v_validator_leaderboard,
                v_staker_positions, v_lst_balances, v_pending_withdrawals TO indexer_reader;

-- ---------------------------------------------------------------------------
-- Reward epochs (SPEC 5). Owned by indexer/epochs/close.py through
-- indexer/store/epochs.py. An epoch row appears with its first reward (status
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
COMMENT ON VIEW v_epoch_allocations IS 'Each closed epoch''s reward split (SPEC 5): per (epoch, validator, staker, asset) the base units allocated; commission rows have staker = the validator id. Stakers share a validator''s reward (after commission) in proportion to time-weighted stake: amount x seconds held inside the epoch, per whole token (amount / 10^decimals) times the asset''s weight. Social delegators share it the same way: delegated points (0 decimals) x seconds held x the feed''s weight, so one point delegated for a second weighs as much as one whole staked token of weight w when the feed''s weight is w. Integer largest remainder: the allocations sum exactly to each reward.';

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

-- The HTTP API (indexer/api/, SPEC 9) reads these through indexer_reader: leaves for proofs, totals per asset.
CREATE OR REPLACE VIEW v_epoch_leaves AS
SELECT epoch, staker, asset, sum(amount) AS amount
  FROM epoch_allocations
 WHERE kind = 'stake'
 GROUP BY epoch, staker, asset
HAVING sum(amount) > 0;
COMMENT ON VIEW v_epoch_leaves IS 'The Merkle leaves of each closed epoch (SPEC 5): per (epoch, staker, asset) the stake allocations summed over validators; commission is not in the tree.';

CREATE OR REPLACE VIEW v_epoch_totals AS
SELECT epoch, asset, sum(amount) AS amount
  FROM epoch_rewards
 GROUP BY epoch, asset;
COMMENT ON VIEW v_epoch_totals IS 'Each epoch''s recorded rewards summed per asset (for a closed epoch: what its allocations sum to).';

GRANT SELECT ON v_epoch_leaves, v_epoch_totals TO indexer_reader;

-- ---------------------------------------------------------------------------
-- Loyalty boost program (SPEC section 6). Operators fill loyalty_activity and
-- asset_prices; `indexer points compute` (indexer/points/runner.py) owns
-- staker_points and rewrites the days it computes, deterministically.
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS loyalty_activity (
    staker text    NOT NULL,   -- canonical address (EVM lower-case hex, TRON base58)
    day    date    NOT NULL,
    points numeric NOT NULL CHECK (points >= 0),   -- activity points per day
    PRIMARY KEY (staker, day)
);

CREATE TABLE IF NOT EXISTS asset_prices (
    asset text    NOT NULL,
    day   date    NOT NULL,
    usd   numeric NOT NULL CHECK (usd >= 0),       -- the day's price; later days reuse the latest one
    PRIMARY KEY (asset, day)
);

CREATE TABLE IF NOT EXISTS staker_points (
    staker         text           NOT NULL,
    day            date           NOT NULL,
    staked         numeric(78, 0) NOT NULL,   -- base units at the end of the day
    multiplier     numeric        NOT NULL,   -- staking multiplier the day scored with
    total_boost    numeric        NOT NULL,
    boosted_points numeric(78, 0) NOT NULL,
    staking_points numeric(78, 0) NOT NULL,
    points         numeric(78, 0) NOT NULL,   -- boosted + staking: the day's additional points
    PRIMARY KEY (staker, day)
);

CREATE OR REPLACE VIEW v_staker_points AS
SELECT day, staker, staked, multiplier, total_boost, boosted_points, staking_points, points FROM staker_points;
GRANT SELECT ON v_staker_points TO indexer_reader;
