"""`python -m service.cli` runs the trainq command line."""

from service.cli import main

main()
