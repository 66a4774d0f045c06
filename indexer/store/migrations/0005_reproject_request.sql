-- `indexer reproject` while a running service holds the projector: the request it leaves for that
-- service's projector, which rebuilds the projections at its next step and clears it (NULL: none).
ALTER TABLE projector_state ADD COLUMN IF NOT EXISTS reproject_requested_at timestamptz;
