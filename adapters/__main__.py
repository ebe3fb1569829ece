"""``python -m adapters`` is ``hr-adapter``."""

from adapters.cli import main

main()
