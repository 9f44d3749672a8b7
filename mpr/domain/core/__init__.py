"""What every lifecycle shares: strict models, roles, command parsing and refusal, the rule
table and its `decide`, the audit ledger, grayscale bucketing and redaction."""
