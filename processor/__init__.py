"""axmon processor: the local broker, the Faust runtime, the sink, queries and the CLI."""
