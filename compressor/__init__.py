"""compressor: compact, adversarially robust networks and deployable engines."""
