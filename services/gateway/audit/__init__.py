"""The audit trail as the gateway records it: what each request read or changed,
journaled on disk, then sent to the admin service in batches."""
