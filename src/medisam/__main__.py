"""``python -m medisam``: the same command line as ``medisam``."""

from medisam.cli import run

if __name__ == "__main__":
    run()
