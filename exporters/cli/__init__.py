"""The commands this package contributes to `compressor` (``compressor.commands`` entry points): export, bench, demo."""
