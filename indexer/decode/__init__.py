"""Pure decoding: raw logs and calldata in, normalized `Event` values out. No IO here."""
