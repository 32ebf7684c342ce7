"""`python -m compressor`."""

from .cli import main

main()
