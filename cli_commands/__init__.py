"""The ``gantry`` commands beyond apply and run: reads with ``--output``, a developer's run and
timer chores, CI gates, shell completion. Each module registers its subcommands on the parser
that ``cli.py`` builds (``add_*_commands``) and talks to the API through ``cli.Gantry``."""
