-- Staker positions are kept as a row per (validator, asset, bucket) holding the bucket's stakers and
-- amounts as arrays, instead of a row per position: a pro rata (SPEC 4) changes nearly every position
-- of a pool, and rewriting a pool's bucket rows (at most 256) costs a seventh of rewriting its
-- thousands of position rows. `positions` stays, as a view with the old table's columns.
CREATE OR REPLACE FUNCTION position_bucket(staker text) RETURNS smallint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT get_byte(decode(md5(staker), 'hex'), 0)::smallint $$;
COMMENT ON FUNCTION position_bucket(text) IS 'The bucket of a staker''s positions (0-255): the first byte of the MD5 of its UTF-8 text.';

CREATE TABLE IF NOT EXISTS position_buckets (
    validator text NOT NULL,
    asset     text NOT NULL,
    bucket    smallint NOT NULL,           -- position_bucket(staker) of every staker in the row
    stakers   text[] NOT NULL,             -- in code point order
    amounts   numeric(78, 0)[] NOT NULL,   -- each staker's amount (never zero), in the same order
    PRIMARY KEY (validator, asset, bucket)
);
ALTER TABLE position_buckets SET (fillfactor = 50);
CREATE INDEX IF NOT EXISTS position_buckets_bucket ON position_buckets (bucket);

INSERT INTO position_buckets (validator, asset, bucket, stakers, amounts)
SELECT validator, asset, position_bucket(staker),
       array_agg(staker ORDER BY staker COLLATE "C"), array_agg(amount ORDER BY staker COLLATE "C")
  FROM positions
 GROUP BY validator, asset, position_bucket(staker);

DROP VIEW v_staker_positions;
DROP TABLE positions;

CREATE OR REPLACE VIEW positions AS
SELECT p.staker, b.validator, b.asset, p.amount
  FROM position_buckets b
 CROSS JOIN LATERAL unnest(b.stakers, b.amounts) AS p(staker, amount);

CREATE OR REPLACE VIEW v_staker_positions AS
SELECT p.staker, b.validator, b.asset, p.amount,
       p.amount / NULLIF(v.amount, 0) AS share, b.bucket
  FROM position_buckets b
 CROSS JOIN LATERAL unnest(b.stakers, b.amounts) AS p(staker, amount)
  JOIN validator_amounts v USING (validator, asset);
COMMENT ON VIEW v_staker_positions IS 'Each staker''s position per validator and asset (SPEC 8). To read one staker''s rows without reading every position, add bucket = position_bucket(staker): WHERE staker = $1 AND bucket = position_bucket($1).';
GRANT SELECT ON v_staker_positions TO indexer_reader;
