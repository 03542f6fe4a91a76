"""The research domain every service checks on every request: studies, issued tokens,
roles and the principal, what viewers of protected studies are sent (privacy,
pseudonyms, the GPS grid), the audit chain, local days, the values records are checked
with and the codebook. Written by the admin service, read by every service."""
