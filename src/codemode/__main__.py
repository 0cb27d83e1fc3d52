"""`python -m codemode`: the `codemode` command."""

from codemode.cli import main

if __name__ == "__main__":
    main(prog_name="codemode")
