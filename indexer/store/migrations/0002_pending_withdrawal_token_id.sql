-- ERC-721 v2 unstake requests: the NFT requested (amount 1); NULL for fungible requests.
-- IF NOT EXISTS: a database made by a build between 47213ee and this migration has it already.
ALTER TABLE pending_withdrawals ADD COLUMN IF NOT EXISTS token_id numeric(78, 0);

CREATE OR REPLACE VIEW v_pending_withdrawals AS
SELECT chain, contract, staker, amount, unlock_time, token_id FROM pending_withdrawals;
