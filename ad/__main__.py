"""`python -m ad ...`: see ad/cli.py."""

from ad.cli import main

if __name__ == "__main__":
    main()
