"""Training recipes on TRL: one short module per method (rm, dpo, rlhf) over `common`."""
