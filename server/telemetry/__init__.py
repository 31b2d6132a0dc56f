"""Signed telemetry: records from bus snapshots, batched into chained ES256 JWS envelopes, and a verifier."""
