"""Data generators that push fake telemetry and real MP4 vlogs through the gateway."""
