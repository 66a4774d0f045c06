-- The HTTP API (SPEC 9) reads through indexer_reader: each closed epoch's Merkle leaves and each epoch's
-- rewards per asset, as views the role may select (it cannot read the tables behind them).
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
