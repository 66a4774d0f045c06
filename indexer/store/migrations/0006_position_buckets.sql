-- Staker positions are kept as a row per (validator, asset, bucket) holding the bucket's stakers and
-- amounts as arrays, instead of a row per position: a pro rata (SPEC 4) changes nearly every position
-- of a pool, and rewriting a pool's bucket rows costs a fraction of rewriting a row per position. A
-- staker's bucket is the first `bits` bits of the MD5 of its text, `bits` growing with the pool (about
-- 8 to 16 stakers a row). `positions` stays, as a view with the old table's columns.
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
ALTER TABLE position_buckets SET (fillfactor = 50);
CREATE INDEX IF NOT EXISTS position_buckets_bucket ON position_buckets (bucket);

INSERT INTO position_buckets (validator, asset, bucket, bits, stakers, amounts)
SELECT validator, asset, position_bucket(staker, bits), bits,
       array_agg(staker ORDER BY staker COLLATE "C"), array_agg(amount ORDER BY staker COLLATE "C")
  FROM (SELECT p.*, position_bits(count(*) OVER (PARTITION BY validator, asset)) AS bits FROM positions p) s
 GROUP BY validator, asset, bits, position_bucket(staker, bits);

DROP VIEW v_staker_positions;
DROP TABLE positions;

CREATE OR REPLACE VIEW positions AS
SELECT p.staker, b.validator, b.asset, p.amount
  FROM position_buckets b
 CROSS JOIN LATERAL unnest(b.stakers, b.amounts) AS p(staker, amount);

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
GRANT SELECT ON v_staker_positions TO indexer_reader;
