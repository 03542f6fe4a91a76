"""The companion app's admin backend (`/api/v1`, the seed's contract): accounts and sign-in,
users' configs and provider keys, characters, logs."""
