"""The command line: `fcgrad check`, `audit`, `bench`; parsing, one-line errors, the terminal."""
