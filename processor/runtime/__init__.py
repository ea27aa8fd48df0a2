"""What runs against Kafka: the Faust worker (``worker``; its batches ``writeback`` and
``coalesce``; its corrections of Faust ``faust_patches``, ``commit_offsets``; its heartbeat and
stall watchdog ``worker_status``, ``status_reporter``, ``stall``), the sink (``sink``), replay
(``replay``), webhook notifications (``notify``, ``notify_runner``), alert acknowledgements
(``acks``: find the alert, build and publish the ack, for the CLI and the API), ``tail`` and ``produce``,
restarts of crashed loops (``supervise``) and the Kafka admin helpers (``admin``: the one
place that turns aiokafka's errors into axmon's).

May import: ``processor.store``, ``processor.folds``, ``processor.settings``,
``processor.errors``, ``schemas``, ``producers``. Never ``processor.ops`` or the CLI.
"""
