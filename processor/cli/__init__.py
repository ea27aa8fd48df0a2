"""The ``axmon`` command line: one module per command group over a shared base.

What lives here:

- :mod:`~processor.cli.app`: the root parser (:func:`build_parser`) and :func:`main`, which
  runs one command and turns its errors into exit codes.
- :mod:`~processor.cli.options`: what the commands share, written once: the one
  :class:`~processor.settings.Settings` built from the flags, the broker to talk to, the
  argparse types that validate a flag, the option blocks (Kafka, ``--data-dir``, ``--db``,
  ``--json``, fold settings, retention).
- :mod:`~processor.cli.render`: how the commands draw: the consoles, numbers, times and
  durations for people, tables that fit the terminal.
- one module per command group, each with ``register(subparsers)`` and its ``cmd_*`` handlers:
  :mod:`~processor.cli.kafka`, :mod:`~processor.cli.pipeline` (produce, worker, sink,
  cleanup), :mod:`~processor.cli.replay` (replay, prove), :mod:`~processor.cli.tail`,
  :mod:`~processor.cli.demo`, :mod:`~processor.cli.read` (workflows, execution, stats,
  metrics, dead-letters), :mod:`~processor.cli.alerts`, :mod:`~processor.cli.health`,
  :mod:`~processor.cli.notify`, :mod:`~processor.cli.serve`.

What it may import: the command line is the top floor. It may import the runtime, operations,
store, folds and schemas (``processor.*``, ``schemas``, ``producers``); nothing outside
``processor/cli/`` imports it. Inside, imports run one way: ``app`` -> command modules -> ``options`` ->
``render``; a command module imports no other command module and no private name.
"""

from processor.cli.app import EXIT_SOFTWARE, build_parser, command_name, main

__all__ = ["EXIT_SOFTWARE", "build_parser", "command_name", "main"]
